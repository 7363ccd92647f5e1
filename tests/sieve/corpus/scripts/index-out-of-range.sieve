require ["index", "fileinto"];
if header :index 5 :contains "received" "" { fileinto "Five"; }
if header :index 3 :last :contains "cc" "" { fileinto "ThirdLastCc"; }
