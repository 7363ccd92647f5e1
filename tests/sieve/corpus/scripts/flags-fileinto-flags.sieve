require ["imap4flags", "fileinto"];
if exists "list-id" { fileinto :flags ["\\Seen", "$List"] "Lists"; }
else { keep :flags "\\Answered"; }
