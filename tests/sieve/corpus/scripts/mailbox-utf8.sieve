require ["mailbox", "fileinto"];
if mailboxexists "销售部" { fileinto "销售部"; }
if mailboxexists "work" { fileinto "lowercase-work"; }
if mailboxexists "inbox" { fileinto "inbox-exists"; }
