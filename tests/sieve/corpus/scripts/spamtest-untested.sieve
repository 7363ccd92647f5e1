require ["spamtest", "fileinto"];
if spamtest :is "0" { fileinto "Untested"; }
