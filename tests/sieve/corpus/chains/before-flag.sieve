require ["imap4flags"];
# Domain "before": a flag the user's script can test; stop ends this script only.
addflag "$Scanned";
if exists "list-id" { stop; }
addflag "$Direct";
