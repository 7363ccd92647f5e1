require ["variables", "fileinto", "relational", "comparator-i;ascii-numeric"];
if header :matches "subject" "*" { set :length "n" "${1}"; }
if string :value "gt" :comparator "i;ascii-numeric" "${n}" "20" { fileinto "Long"; } else { fileinto "Short"; }
