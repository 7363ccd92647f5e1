require ["include", "fileinto"];
include :personal "lists";
if header :contains "subject" "report" { fileinto "Work"; }
