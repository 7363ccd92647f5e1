require ["fileinto", "spamtest", "relational", "comparator-i;ascii-numeric"];
# Personal spam rules, included by several scripts.
if spamtest :value "ge" :comparator "i;ascii-numeric" "7" { fileinto "Junk"; stop; }
if header :is "x-spam-flag" "YES" { fileinto "Junk"; }
