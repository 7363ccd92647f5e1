if size :over 1G { discard; }
if size :under 1G { keep; }
