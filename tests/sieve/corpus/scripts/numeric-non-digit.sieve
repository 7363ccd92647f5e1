require ["relational", "comparator-i;ascii-numeric", "fileinto"];
# "1 (Highest)" -> 1; a value with no leading digit is positive infinity (RFC 4790 §9.1).
if header :value "gt" :comparator "i;ascii-numeric" "subject" "1000000" { fileinto "Infinite"; }
if header :value "le" :comparator "i;ascii-numeric" "x-priority" "1" { fileinto "High"; }
