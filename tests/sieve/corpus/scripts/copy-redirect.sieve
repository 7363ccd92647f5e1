require "copy";
if address :is "from" "boss@example.com" { redirect :copy "assistant@example.com"; }
