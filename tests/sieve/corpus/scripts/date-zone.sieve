require ["date", "fileinto", "variables"];
if date :zone "+0800" :matches "date" "date" "*" { set "cn" "${1}"; }
if date :originalzone :matches "date" "zone" "*" { fileinto "Zone${1}-${cn}"; }
