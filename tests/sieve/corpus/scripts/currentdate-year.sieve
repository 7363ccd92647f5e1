require ["date", "relational", "fileinto"];
# Only a zone-independent, slow-moving part of the current date.
if currentdate :value "ge" "year" "2020" { fileinto "Recent"; }
if currentdate :value "lt" "year" "2000" { discard; }
