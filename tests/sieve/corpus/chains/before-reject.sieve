require "reject";
if address :domain :is "from" ["evil.example", "lottery.example"] { reject "Refused by example.com policy"; }
