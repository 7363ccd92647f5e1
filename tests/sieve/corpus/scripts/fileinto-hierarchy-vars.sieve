require ["fileinto", "variables", "mailbox"];
if header :matches "date" "*, * * * *" { fileinto :create "Archive/${4}/${3}"; }
