require ["include", "variables", "fileinto"];
global ["a", "b"];
set "a" "x";
fileinto "${a}${b}";
