# Five redirects: over the limit of 4 -> runtime error, keep.
redirect "a@example.net";
redirect "b@example.net";
redirect "c@example.net";
redirect "d@example.net";
redirect "e@example.net";
