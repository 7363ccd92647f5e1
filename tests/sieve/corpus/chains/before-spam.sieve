require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto"];
# Domain "before": spam goes to Junk and the user's rules never run.
if spamtest :value "ge" :comparator "i;ascii-numeric" "6" { fileinto "Junk"; stop; }
