require "fileinto";
if not address :domain :is "from" ["example.com", "example.org"] {
  fileinto "Archive";
}
