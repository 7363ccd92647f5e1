require ["variables", "fileinto"];
set :lower "a" "MiXeD";
set :upper "b" "MiXeD";
set :upperfirst "c" "mixed";
set :lowerfirst "d" "MIXED";
set :length "e" "hello";
set :quotewildcard "f" "a*b?c";
fileinto "${a}-${b}-${c}-${d}-${e}-${f}";
