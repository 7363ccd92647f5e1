require ["relational", "comparator-i;ascii-numeric", "fileinto"];
if address :count "gt" :comparator "i;ascii-numeric" "to" "2" { fileinto "ManyTo"; }
if header :count "eq" :comparator "i;ascii-numeric" "received" "1" { fileinto "OneHop"; }
