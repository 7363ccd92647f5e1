require "fileinto";
# All fields of a repeated header are tested.
if header :is "x-disk-percent" "12" { fileinto "Twelve"; }
if header :contains "cc" "facilities" { fileinto "Facilities"; }
