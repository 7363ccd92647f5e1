require "imap4flags";
if header :contains "subject" "URGENT" { setflag "\\Flagged"; }
keep;
