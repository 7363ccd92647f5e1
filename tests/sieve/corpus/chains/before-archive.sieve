require ["fileinto", "copy"];
# Domain "before": every message gets a copy in the tracking folder.
fileinto :copy "Archive";
