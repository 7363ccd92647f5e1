require ["fileinto"];
# stop in an included script ends the whole evaluation (RFC 6609 §3.2).
if header :contains "subject" "report" { fileinto "Reports"; stop; }
