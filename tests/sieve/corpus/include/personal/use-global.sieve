require ["include", "variables", "fileinto"];
global "folder";
if header :contains "subject" "report" { set "folder" "Work"; }
fileinto "${folder}/Inc";
