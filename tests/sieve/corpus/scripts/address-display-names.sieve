require "fileinto";
if address :all :is "to" "john.doe@example.net" { fileinto "John"; }
if header :contains "to" "Doe, John" { fileinto "DisplayName"; }
