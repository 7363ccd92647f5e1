require ["include", "fileinto"];
include :personal "spam-rules";
include :personal "spam-rules";
include :once :personal "nested";
