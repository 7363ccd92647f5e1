require ["body", "fileinto"];
if body :raw :contains "Content-Type: application/pdf" { fileinto "Attachments"; }
if body :raw :contains "TVqQAAM" { discard; }
