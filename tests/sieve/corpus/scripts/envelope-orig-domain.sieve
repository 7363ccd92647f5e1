require ["envelope", "fileinto", "variables"];
if envelope :domain :matches "from" "*.*" { fileinto "F/${1}/${2}"; }
