if size :over 1M { discard; }
if size :under 1K { keep; }
if size :over 2000 { redirect "big@example.com"; }
