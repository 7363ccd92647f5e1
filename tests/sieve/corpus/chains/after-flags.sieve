require ["imap4flags", "fileinto"];
if hasflag "$Direct" { addflag "\\Seen"; }
if header :contains "subject" "report" { fileinto "Work"; }
