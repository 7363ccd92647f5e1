require ["date", "relational", "fileinto"];
if date :value "lt" "date" "year" "2020" { fileinto "Archive"; }
elsif date :is "date" "year" "2026" { fileinto "Archive/2026"; }
