keep;
redirect :copy "a@example.com";
