require ["variables", "fileinto"];
if header :matches "subject" "*" { set :upperfirst :lower "s" "${1}"; }
set :length "n" "${s}";
fileinto "${n}";
