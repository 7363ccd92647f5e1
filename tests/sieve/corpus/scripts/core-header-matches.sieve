require "fileinto";
if header :matches "subject" "*[dev]*" { fileinto "Lists/Dev"; }
elsif header :matches "subject" "Re: *" { fileinto "Work"; }
elsif header :matches "subject" "???:*" { fileinto "Archive"; }
