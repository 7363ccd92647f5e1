require ["include", "variables", "fileinto"];
global "tag";
set "global.tag" "T1";
if string :is "${tag}" "T1" { fileinto "Global-${global.tag}"; }
