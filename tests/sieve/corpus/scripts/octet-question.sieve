require "fileinto";
if header :matches :comparator "i;octet" "subject" "Lunch ?omorrow*" { fileinto "Lunch"; }
if header :matches "from" "*<?????@*" { fileinto "FiveChars"; }
