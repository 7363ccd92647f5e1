require ["imap4flags", "fileinto", "relational", "comparator-i;ascii-numeric"];
setflag ["\\Seen", "A", "B", "a"];
if hasflag :count "eq" :comparator "i;ascii-numeric" "3" { fileinto "Three"; }
if hasflag :is ["x", "b"] { fileinto "HasB"; }
removeflag ["a", "\\seen"];
