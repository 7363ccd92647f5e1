require ["fileinto", "imap4flags"];
# Flags on an explicit keep and on a later fileinto of the same folder.
fileinto "Work";
fileinto :flags "\\Answered" "Work";
keep :flags "\\Seen";
