require ["environment", "variables", "fileinto"];
if environment :matches "version" "*.*" { fileinto "v${1}"; }
