require ["imap4flags", "fileinto"];
addflag "Todo";
if hasflag :contains "todo" { fileinto "Work"; }
if hasflag "\\Seen" { discard; }
