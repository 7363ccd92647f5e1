require ["relational", "fileinto"];
# Default comparator i;ascii-casemap orders strings.
if header :value "lt" "subject" "M" { fileinto "AtoL"; }
else { fileinto "MtoZ"; }
