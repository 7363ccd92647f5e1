keep;
keep;
discard;
discard;
