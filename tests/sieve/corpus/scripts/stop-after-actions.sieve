require ["fileinto", "imap4flags"];
addflag "before";
fileinto "Work";
if true { stop; }
fileinto "Never";
