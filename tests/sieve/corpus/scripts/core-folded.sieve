require "fileinto";
if header :contains "subject" "folded over two" { fileinto "Folded"; }
if header :is "x-custom-header" "first part\tsecond part" { fileinto "Unfolded"; }
if address :is "to" "other@example.net" { fileinto "ThirdTo"; }
