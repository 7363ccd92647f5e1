require ["variables", "fileinto", "relational", "comparator-i;ascii-numeric"];
set "dept" "sales";
if string :is "${dept}" "sales" { fileinto "销售部"; }
if string :matches "${dept}" "s*s" { fileinto "Sxs"; }
if string :count "eq" :comparator "i;ascii-numeric" ["a", "", "b"] "2" { fileinto "Count"; }
