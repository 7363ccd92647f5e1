redirect "assistant@example.com";
