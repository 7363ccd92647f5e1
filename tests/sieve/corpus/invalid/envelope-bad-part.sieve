require "envelope";
if envelope "subject" "x" { keep; }
