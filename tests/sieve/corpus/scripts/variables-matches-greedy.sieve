require ["variables", "fileinto"];
# RFC 5229 §3.2: each * takes as little as possible, the last one the rest.
if header :matches "subject" "*: *" { fileinto "A/${1}/${2}"; }
# "?" after a space: Pigeonhole's "?" takes one octet, so next to a
# non-ASCII character it splits it (we take one character, RFC 5228 §2.7.1).
if header :matches "subject" "* ?*" { fileinto "B/${1}/${2}/${3}"; }
