require "fileinto";
if header :matches "x-not-there" "*" { fileinto "Absent"; }
if header :matches "subject" "*" { fileinto "Present"; }
