require "fileinto";
# A string list on both sides.
if header :contains ["subject", "from"] ["invoice", "receipt", "billing"] {
  fileinto "Receipts";
}
