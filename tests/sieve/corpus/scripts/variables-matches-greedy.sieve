require ["variables", "fileinto"];
# RFC 5229 §3.2: each * takes as little as possible, the last one the rest.
if header :matches "subject" "*: *" { fileinto "A/${1}/${2}"; }
if header :matches "subject" "*?*" { fileinto "B/${1}/${2}/${3}"; }
