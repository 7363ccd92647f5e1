require ["body", "fileinto"];
if body :text :contains "secret-inner-marker" { fileinto "Inner"; }
if body :content "message/rfc822" :contains "Invoice" { fileinto "Rfc822"; }
if body :raw :contains "secret-inner-marker" { fileinto "Raw"; }
