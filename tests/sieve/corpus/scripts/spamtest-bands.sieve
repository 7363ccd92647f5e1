require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto", "imap4flags"];
if spamtest :value "ge" :comparator "i;ascii-numeric" "9" { discard; stop; }
if spamtest :value "ge" :comparator "i;ascii-numeric" "5" { fileinto :flags "$Junk" "Junk"; }
elsif spamtest :value "eq" :comparator "i;ascii-numeric" "1" { addflag "$NotJunk"; }
