require ["variables", "fileinto"];
if header :matches "subject" "* *" { fileinto "${01}-${2}"; }
