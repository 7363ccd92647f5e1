require ["relational", "comparator-i;ascii-numeric", "fileinto"];
if header :count "ne" :comparator "i;ascii-numeric" "to" "1" { fileinto "NotOneTo"; }
if header :value "ne" "subject" "Lunch tomorrow?" { fileinto "Other"; }
