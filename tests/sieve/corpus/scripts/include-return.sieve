require ["include", "fileinto"];
include "lists";
fileinto "AfterInclude";
