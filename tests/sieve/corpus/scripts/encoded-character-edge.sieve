require ["encoded-character", "fileinto"];
# Not valid encodings stay as written (RFC 5228 §2.4.2.4).
fileinto "a${hex:zz}b${hex: 41 42 }c${unicode:}d${HEX:43}";
