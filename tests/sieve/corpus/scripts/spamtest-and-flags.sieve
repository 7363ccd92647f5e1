require ["spamtest", "imap4flags", "relational", "comparator-i;ascii-numeric", "variables"];
if spamtest :matches "*" { set "s" "${1}"; }
addflag "score-${s}";
if spamtest :value "gt" :comparator "i;ascii-numeric" "3" { addflag "$Junk"; }
