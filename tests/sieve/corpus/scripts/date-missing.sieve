require ["date", "fileinto"];
if not date :matches "date" "year" "*" { fileinto "NoDate"; }
