require ["index", "relational", "comparator-i;ascii-numeric", "fileinto"];
if header :index 2 :value "lt" :comparator "i;ascii-numeric" "x-disk-percent" "50" { fileinto "SecondLow"; }
