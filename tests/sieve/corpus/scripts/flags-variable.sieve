require ["imap4flags", "variables", "fileinto"];
set "myflags" "\\Flagged Important";
addflag "myflags" "\\Seen";
removeflag "myflags" "Important";
if hasflag :is "myflags" "\\Flagged \\Seen" { fileinto :flags "${myflags}" "Work"; }
keep;
