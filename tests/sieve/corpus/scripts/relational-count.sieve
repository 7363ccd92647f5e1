require ["relational", "comparator-i;ascii-numeric", "fileinto"];
if address :count "ge" :comparator "i;ascii-numeric" ["to", "cc"] "4" { fileinto "Bulk"; }
if header :count "eq" :comparator "i;ascii-numeric" "cc" "2" { fileinto "TwoCc"; }
