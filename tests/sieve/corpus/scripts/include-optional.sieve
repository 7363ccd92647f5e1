require ["include", "fileinto"];
include :optional :personal "no-such-script";
fileinto "Work";
