require ["index", "fileinto", "variables"];
if header :index 1 :matches "received" "from * (*" { fileinto "First/${1}"; }
if header :index 1 :last :contains "received" "mail.example.com" { fileinto "Last"; }
