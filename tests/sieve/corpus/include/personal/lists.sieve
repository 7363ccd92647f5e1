require ["include", "fileinto"];
# Returns early for list mail, so the includer continues.
if exists "list-id" { fileinto "Lists"; return; }
if header :contains "subject" "Re:" { fileinto "Work"; }
