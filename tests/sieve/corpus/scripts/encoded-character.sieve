require ["encoded-character", "fileinto"];
if header :contains "subject" "${unicode:5B63 5EA6}" { fileinto "${hex:E9 94 80 E5 94 AE E9 83 A8}"; }
if header :contains "subject" "R${hex:C3 A9}union" { fileinto "Fr"; }
