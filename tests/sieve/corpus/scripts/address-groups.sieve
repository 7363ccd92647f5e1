require ["fileinto", "relational", "comparator-i;ascii-numeric"];
if address :count "eq" :comparator "i;ascii-numeric" "cc" "3" { fileinto "ThreeCc"; }
if address :is "cc" "bob@example.com" { fileinto "Bob"; }
if address :count "eq" :comparator "i;ascii-numeric" "to" "0" { fileinto "NoTo"; }
