require ["variables", "fileinto"];
if anyof (header :matches "subject" "*o*", header :matches "from" "*@*") { fileinto "M/${1}"; }
