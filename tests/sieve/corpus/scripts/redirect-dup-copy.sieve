require "copy";
redirect :copy "a@example.net";
redirect "a@example.net";
