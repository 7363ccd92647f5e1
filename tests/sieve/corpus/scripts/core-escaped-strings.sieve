require "fileinto";
if header :contains "subject" "\"quoted\"" { discard; }
fileinto "Back\\slash";
