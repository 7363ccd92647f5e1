require ["body", "fileinto"];
if body :content "text" :contains "milestone" { fileinto "Work/Projects"; }
