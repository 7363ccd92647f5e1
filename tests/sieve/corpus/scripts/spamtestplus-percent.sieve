require ["spamtestplus", "relational", "comparator-i;ascii-numeric", "fileinto"];
# Thresholds away from band edges: our SieveMessage carries the 1..10 value
# (RFC 5235 §3.1), sieve-test derives the percentage from the raw score.
if spamtest :percent :value "ge" :comparator "i;ascii-numeric" "80" { discard; }
elsif spamtest :percent :value "ge" :comparator "i;ascii-numeric" "50" { fileinto "Junk"; }
