require ["envelope", "fileinto"];
if envelope :domain :is "from" "lists.example.org" { fileinto "Lists"; }
if envelope :all :is "to" "user@example.com" { fileinto "Direct"; }
