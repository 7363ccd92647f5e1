require ["variables", "fileinto"];
if header :matches "subject" "[*] *" { fileinto "Lists/${1}"; }
elsif header :matches "from" "*<*@*>" { fileinto "From/${3}"; }
