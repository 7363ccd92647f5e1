require ["subaddress", "fileinto"];
# No "+": :detail does not match anything (RFC 5233 §4).
if address :detail :matches "from" "*" { fileinto "HasDetail"; }
if address :detail :is "to" "family" { fileinto "Family"; }
