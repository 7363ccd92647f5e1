require ["virustest", "fileinto"];
if virustest :is "0" { fileinto "NotScanned"; }
if virustest :is "1" { fileinto "Clean"; }
