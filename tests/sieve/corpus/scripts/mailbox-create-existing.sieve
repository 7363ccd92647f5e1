require ["mailbox", "fileinto", "imap4flags"];
if not mailboxexists "Receipts" { fileinto :create "Receipts"; } else { fileinto :flags "\\Seen" "Receipts"; }
