require ["variables", "fileinto", "relational", "comparator-i;ascii-numeric"];
if header :matches "x-disk-percent" "*" { set "p" "${1}"; }
if string :value "gt" :comparator "i;ascii-numeric" "${p}" "50" { fileinto "Full-${p}"; }
