require ["include", "fileinto"];
if exists "list-id" { fileinto "Lists"; return; }
fileinto "NotList";
