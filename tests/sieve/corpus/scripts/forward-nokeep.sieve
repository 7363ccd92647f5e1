# What xmailctl forward set (no --keep) writes.
redirect "user@elsewhere.example";
