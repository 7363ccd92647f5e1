require "fileinto";
# RFC 2047 in display names is decoded for header, ignored by address.
if header :contains "from" "Zoë" { fileinto "Zoe"; }
if header :contains "from" "张伟" { fileinto "ZhangWei"; }
if header :contains "from" "José" { fileinto "Jose"; }
