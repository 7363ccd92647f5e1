require ["envelope", "fileinto"];
if envelope :localpart :matches "to" "user*" { fileinto "Mine"; }
