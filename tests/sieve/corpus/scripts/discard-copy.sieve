require ["fileinto", "copy"];
discard;
fileinto :copy "Archive";
