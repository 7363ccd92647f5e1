require "imap4flags";
# Flags set but no action: they go with the implicit keep.
setflag "\\Seen";
addflag "Junk";
