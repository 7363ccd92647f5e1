require ["envelope", "subaddress", "fileinto"];
if envelope :user :is "to" "user" { fileinto "Work"; }
if address :detail :is "to" "lists" { fileinto "Lists/Announce"; }
if address :user :is "to" "sales" { fileinto "销售部"; }
