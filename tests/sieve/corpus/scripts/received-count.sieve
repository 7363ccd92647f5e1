require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if header :count "ge" :comparator "i;ascii-numeric" "received" "5" { fileinto "ManyHops"; }
if header :contains "received" "hop3.example.net" { fileinto "Hop3"; }
