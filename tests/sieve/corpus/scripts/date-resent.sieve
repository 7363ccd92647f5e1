require ["date", "relational", "comparator-i;ascii-numeric", "fileinto"];
if date :value "ge" :comparator "i;ascii-numeric" "resent-date" "day" "4" { fileinto "Resent"; }
