require ["fileinto", "imap4flags"];
if address :is "resent-to" "user@example.com" { fileinto "Resent"; }
if exists "resent-from" { addflag "x"; }
