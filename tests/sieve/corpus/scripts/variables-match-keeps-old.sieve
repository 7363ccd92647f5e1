require ["variables", "fileinto"];
# A failed match leaves the match variables as they were (RFC 5229 §3.2).
if header :matches "from" "*@*" { set "dom" "${2}"; }
if header :matches "subject" "zzz*" { set "x" "y"; }
fileinto "${dom}/${1}";
