require ["variables", "fileinto"];
set "a" "alpha";
set "b" "beta";
if string :matches ["${a}", "${b}"] "b*" { fileinto "B-${1}"; }
