require ["variables", "fileinto"];
set "x" "a";
fileinto "${x}-${-${x";
