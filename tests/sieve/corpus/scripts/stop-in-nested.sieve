require "fileinto";
if exists "subject" { if header :contains "subject" "Re" { fileinto "Work"; stop; } }
fileinto "After";
