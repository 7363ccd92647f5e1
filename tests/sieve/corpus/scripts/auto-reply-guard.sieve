require ["vacation", "fileinto"];
if anyof (header :matches "auto-submitted" "auto-*", header :is "precedence" ["bulk", "list"], address :localpart :is "from" "mailer-daemon") {
  fileinto "Archive";
} else {
  vacation :days 2 "Back Monday.";
}
