require ["date", "fileinto", "variables"];
if date :matches "x-custom-header" "year" "*" { fileinto "Weird${1}"; }
if date :matches "resent-date" "weekday" "*" { fileinto "Wd${1}"; }
