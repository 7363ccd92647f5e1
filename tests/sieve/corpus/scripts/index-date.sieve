require ["date", "index", "fileinto", "variables"];
if date :index 1 :matches "date" "year" "*" { fileinto "Y${1}"; }
