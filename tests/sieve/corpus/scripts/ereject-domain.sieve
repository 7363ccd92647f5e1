require ["ereject"];
if address :domain :is "from" ["lottery.example", "evil.example"] { ereject "Blocked sender domain"; stop; }
keep;
