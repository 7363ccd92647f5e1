require "fileinto";
if header :matches :comparator "i;octet" "subject" "*lunch*" { fileinto "Lower"; }
if header :matches :comparator "i;octet" "subject" "*Lunch*" { fileinto "Upper"; }
