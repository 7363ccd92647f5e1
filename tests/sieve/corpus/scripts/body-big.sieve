require ["body", "fileinto"];
if body :text :contains "FINAL-MARKER" { fileinto "Archive"; }
if body :raw :matches "*report data 999*" { fileinto "Matched"; }
