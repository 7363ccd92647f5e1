require ["date", "fileinto", "variables"];
if date :zone "-1000" :matches "date" "date" "*" { set "h" "${1}"; }
if date :zone "+1400" :matches "date" "weekday" "*" { fileinto "${h}/${1}"; }
