require ["fileinto", "copy", "reject", "envelope"];
# Like a domain "before" script: archive all, refuse one domain.
if address :domain :is "from" "evil.example" { reject "Refused by policy"; stop; }
fileinto :copy "Archive";
