require ["virustest", "relational", "comparator-i;ascii-numeric", "fileinto"];
if virustest :value "eq" :comparator "i;ascii-numeric" "5" { discard; stop; }
if virustest :value "ge" :comparator "i;ascii-numeric" "2" { fileinto "Junk"; }
