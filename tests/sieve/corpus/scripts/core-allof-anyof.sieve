require "fileinto";
if allof (exists "from", anyof (header :contains "subject" "report", header :contains "subject" "status")) {
  fileinto "Work";
}
if anyof (not exists "x-spam-score", allof (true, false)) { keep; }
