require ["envelope", "subaddress", "fileinto", "variables"];
if envelope :all :matches "to" "*" { set "all" "${1}"; }
if envelope :detail :matches "from" "*" { set "d" "${1}"; }
fileinto "to=${all}|d=${d}";
