require ["variables", "fileinto"];
fileinto "Box-${undefined}-${1}-end";
