require ["variables", "fileinto", "relational", "comparator-i;ascii-numeric"];
if header :matches "subject" "* * *" { if string :count "ge" :comparator "i;ascii-numeric" ["${1}", "${2}", "${3}", "${4}"] "3" { fileinto "ThreeWords/${3}"; } }
