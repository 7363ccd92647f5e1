require ["body", "fileinto"];
if body :content "multipart" :contains "alt-1" { fileinto "Multipart"; }
if body :content "message/delivery-status" :contains "5.1.1" { fileinto "Dsn"; }
