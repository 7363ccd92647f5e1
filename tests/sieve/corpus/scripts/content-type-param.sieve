require ["fileinto", "variables"];
if header :matches "content-type" "*charset=*" { set :lower "cs" "${2}"; fileinto "cs-${cs}"; }
elsif header :matches "content-type" "multipart/*;*" { fileinto "mp-${1}"; }
