require ["body", "fileinto"];
if body :text :contains "invoice" { fileinto "Receipts"; }
if body :text :contains "pineapple" { fileinto "Secret"; }
