require "fileinto";
# :contains "" is true for every present header, false when absent.
if header :contains "x-custom-header" "" { fileinto "Custom"; }
if header :contains "x-not-there" "" { fileinto "Never"; }
