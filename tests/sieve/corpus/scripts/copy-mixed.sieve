require ["fileinto", "copy"];
fileinto :copy "Archive/2026";
redirect :copy "backup@example.net";
fileinto "Work";
