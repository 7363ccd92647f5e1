require ["imap4flags", "fileinto"];
addflag ["\\Seen", "\\Flagged"];
removeflag "\\Flagged";
addflag "$Work";
fileinto "Work";
