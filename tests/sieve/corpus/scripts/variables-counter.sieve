require ["variables", "fileinto", "relational", "comparator-i;ascii-numeric"];
set "score" "0";
if header :contains "subject" "!!!" { set "score" "${score}1"; }
if exists "x-spam-flag" { set "score" "${score}1"; }
if string :value "ge" :comparator "i;ascii-numeric" "${score}" "11" { fileinto "Junk"; }
