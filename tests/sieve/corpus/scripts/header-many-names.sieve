require "fileinto";
if header :contains ["subject", "from", "to", "cc", "x-long", "received", "date", "message-id"] ["token0100", "hop4", "budget", "zzz"] { fileinto "Found"; }
