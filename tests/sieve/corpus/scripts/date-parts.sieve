require ["date", "fileinto", "variables"];
if date :zone "-0500" :matches "date" "std11" "*" { set "a" "${1}"; }
if date :zone "-0500" :matches "date" "julian" "*" { set "b" "${1}"; }
if date :zone "-0500" :matches "date" "time" "*" { set "c" "${1}"; }
if date :zone "-0500" :matches "date" "month" "*" { set "d" "${1}"; }
fileinto "${a}|${b}|${c}|${d}";
