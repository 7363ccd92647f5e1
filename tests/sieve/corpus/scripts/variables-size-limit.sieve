require ["variables", "fileinto"];
# Doubling past the 4 KiB variable limit (Pigeonhole truncates).
set "a" "0123456789012345678901234567890123456789012345678901234567890123456789012345678901234567890123456789";
set "a" "${a}${a}";
set "a" "${a}${a}";
set "a" "${a}${a}";
set "a" "${a}${a}";
set "a" "${a}${a}";
set "a" "${a}${a}";
set :length "n" "${a}";
fileinto "len-${n}";
