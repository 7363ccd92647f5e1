require ["date", "fileinto", "variables"];
if date :originalzone :matches "date" "time" "*" { set "t" "${1}"; }
if date :originalzone :matches "date" "zone" "*" { fileinto "${t} ${1}"; }
