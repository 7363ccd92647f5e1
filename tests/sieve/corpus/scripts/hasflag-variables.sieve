require ["imap4flags", "variables", "fileinto"];
set "f" "\\Answered";
addflag "mine" "${f} $Label";
if hasflag "mine" "$label" { fileinto :flags "${f}" "Work"; }
if hasflag "mine" "$Other" { discard; }
