require "fileinto";
if size :over 100K { fileinto "Archive"; }
elsif size :under 400 { fileinto "Receipts"; }
