require "fileinto";
if anyof (header :contains "subject" "a", header :contains "subject" "e", header :contains "subject" "i", header :contains "subject" "o", header :contains "subject" "u") {
  if allof (exists "from", exists "date", exists "message-id") { fileinto "Vowel"; }
}
