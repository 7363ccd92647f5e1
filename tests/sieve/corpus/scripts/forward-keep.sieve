require ["copy"];
# What xmailctl forward set --keep writes.
redirect :copy "user@elsewhere.example";
