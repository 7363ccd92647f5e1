require ["imap4flags", "fileinto", "copy"];
setflag "\\Seen";
fileinto :copy "Archive";
setflag "\\Flagged";
fileinto "Work";
