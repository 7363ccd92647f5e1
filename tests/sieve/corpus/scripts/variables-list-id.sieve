require ["variables", "fileinto"];
if header :matches "list-id" "*<*.*.*>*" { set :lower "list" "${2}"; fileinto "Lists/${list}"; }
