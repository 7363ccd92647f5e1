require ["fileinto", "copy"];
fileinto :copy "INBOX";
fileinto "Work";
