require ["fileinto", "relational", "comparator-i;ascii-numeric", "index", "variables"];
if header :count "ge" :comparator "i;ascii-numeric" "subject" "2" { fileinto "TwoSubjects"; }
if header :index 2 :matches "subject" "*" { fileinto "Second/${1}"; }
if header :index 3 :matches "received" "from *.example.net *" { fileinto "Hop/${1}"; }
