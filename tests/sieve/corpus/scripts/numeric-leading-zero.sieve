require ["relational", "comparator-i;ascii-numeric", "fileinto"];
if header :value "eq" :comparator "i;ascii-numeric" "x-count" "42" { fileinto "FortyTwo"; }
if header :is :comparator "i;ascii-numeric" "x-count" "0042" { fileinto "Same"; }
