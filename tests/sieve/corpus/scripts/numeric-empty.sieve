require ["relational", "comparator-i;ascii-numeric", "fileinto"];
if header :is :comparator "i;ascii-numeric" "x-not-there" "" { fileinto "Never"; }
if header :value "eq" :comparator "i;ascii-numeric" "subject" "999999999999999999999" { fileinto "InfEqBig"; }
