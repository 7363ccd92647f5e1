require "fileinto";
if header :contains "subject" "invoice" { fileinto "Receipts"; }
elsif header :contains "subject" "receipt" { fileinto "Receipts"; }
elsif header :contains "from" "boss" { fileinto "Work"; }
elsif header :contains "subject" "[dev]" { fileinto "Lists/Dev"; }
elsif address :domain :is "from" "family.example" { fileinto "Family"; }
else { keep; }
