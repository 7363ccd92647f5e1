require ["fileinto", "variables"];
# Raw 8-bit header bytes that are not UTF-8.
if header :contains "subject" "aus" { fileinto "Aus"; }
if address :domain :is "from" "example.de" { fileinto "De"; }
