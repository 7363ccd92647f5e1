require "fileinto";
if address :domain :is "from" "example.org" { fileinto "Work"; }
if address :localpart :is "from" "boss" { fileinto "Work/Projects"; }
if address :all :contains "to" "example.net" { fileinto "Archive"; }
