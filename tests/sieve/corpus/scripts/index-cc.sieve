require ["index", "fileinto", "variables"];
if address :index 2 :is "cc" "hr@example.com" { fileinto "Second"; }
if address :index 1 :last :is "cc" "facilities@example.com" { fileinto "LastCc"; }
