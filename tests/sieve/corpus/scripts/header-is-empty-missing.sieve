require "fileinto";
if header :is "x-nothing" "" { fileinto "MissingIsEmpty"; }
if not header :matches "x-nothing" "*" { fileinto "MissingNoMatch"; }
