require ["imap4flags", "fileinto"];
addflag "  one   two ";
addflag ["two", "three"];
fileinto "Work";
removeflag "one";
keep;
