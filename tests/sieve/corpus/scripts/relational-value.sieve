require ["relational", "comparator-i;ascii-numeric", "fileinto"];
if header :value "ge" :comparator "i;ascii-numeric" "x-disk-percent" "90" { fileinto "Alerts"; }
if header :value "lt" :comparator "i;ascii-numeric" "x-priority" "3" { fileinto "Work"; }
