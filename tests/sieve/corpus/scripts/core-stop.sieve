if header :contains "subject" "lunch" { keep; stop; }
discard;
