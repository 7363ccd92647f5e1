# The same address twice counts once (RFC 5228 §4.2 duplicate).
redirect "a@example.net";
redirect "a@example.net";
