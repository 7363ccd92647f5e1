require ["environment", "fileinto"];
if environment :contains "no-such-item" "" { fileinto "Never"; }
if not environment :is "remote-ip" "192.0.2.99" { keep; }
