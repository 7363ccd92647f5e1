require ["vacation", "vacation-seconds"];
# :seconds 0: reply every time (RFC 6131 §2).
vacation :seconds 0 "auto";
