require ["reject", "vacation"];
# vacation and reject conflict? RFC 5230 §4.7: reject cancels vacation? No: they are compatible in Pigeonhole? Compare.
vacation "away";
reject "no";
