require ["variables", "encoded-character", "fileinto"];
set "cn" "${unicode:9500 552E}";
if header :contains "subject" "${cn}" { fileinto "${cn}"; }
set :length "n" "${cn}";
fileinto "len${n}";
