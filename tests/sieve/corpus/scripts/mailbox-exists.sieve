require ["mailbox", "fileinto"];
if mailboxexists "Lists/Dev" { fileinto "Lists/Dev"; }
if mailboxexists ["Nope", "Work"] { fileinto "Work"; }
if mailboxexists "Missing" { discard; }
