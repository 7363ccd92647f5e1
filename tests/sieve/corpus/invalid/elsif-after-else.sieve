if true { keep; } else { discard; } elsif false { stop; }
