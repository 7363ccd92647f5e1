require "fileinto";
if header :matches "subject" "*[dev]*" { fileinto "Lists/Dev"; }
elsif header :matches "subject" "Re: *" { fileinto "Work"; }
# Not "???:*": Pigeonhole 2.3.19 matches a pattern that starts with "?" and has a
# later "*" without checking the literal after the "?" ("?x*" matches "hi").
elsif header :matches "subject" "*Fw?: *" { fileinto "Archive"; }
