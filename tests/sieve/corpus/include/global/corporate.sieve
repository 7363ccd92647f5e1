require ["fileinto", "copy"];
# Corporate policy: every mail from outside gets archived.
if not address :domain :is "from" "example.com" { fileinto :copy "Archive"; }
