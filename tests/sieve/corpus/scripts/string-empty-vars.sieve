require ["variables", "fileinto", "relational", "comparator-i;ascii-numeric"];
if string :is "${nothing}" "" { fileinto "Empty"; }
if string :count "eq" :comparator "i;ascii-numeric" "${nothing}" "0" { fileinto "ZeroCount"; }
