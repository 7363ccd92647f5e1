require ["fileinto", "copy"];
# Domain "after": runs only while the message is still kept.
fileinto :copy "Archive/2026";
