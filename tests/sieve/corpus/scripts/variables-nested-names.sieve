require ["variables", "fileinto"];
set "a" "x";
set "b" "${a}${a}";
set "c" "${b}-\${a}";
fileinto "${c}";
