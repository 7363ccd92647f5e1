require ["variables", "fileinto"];
if address :matches :domain "from" "*.*" { fileinto "${0}"; }
