require "fileinto";
# Undisclosed recipients / groups / broken addresses.
if address :all :is "to" "" { fileinto "EmptyAddr"; }
if address :domain :contains "to" "example" { fileinto "Example"; }
