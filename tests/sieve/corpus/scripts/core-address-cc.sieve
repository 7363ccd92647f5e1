require "fileinto";
if address :is ["to", "cc"] "boss@example.com" { fileinto "Work"; }
if address :domain :is "cc" "example.com" { fileinto "Archive"; }
