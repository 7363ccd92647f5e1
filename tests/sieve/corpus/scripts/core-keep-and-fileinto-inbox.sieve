require "fileinto";
keep;
fileinto "INBOX";
fileinto "Work";
