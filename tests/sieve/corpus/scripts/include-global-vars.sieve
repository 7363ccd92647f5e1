require ["include", "variables", "fileinto"];
global "folder";
set "folder" "Archive";
include :personal "use-global";
fileinto "${folder}";
