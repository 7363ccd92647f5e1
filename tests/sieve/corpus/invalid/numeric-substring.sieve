require ["fileinto", "comparator-i;ascii-numeric"];
# i;ascii-numeric has no substring match (RFC 4790 §9.1.1).
if header :contains :comparator "i;ascii-numeric" "subject" "1" {
  fileinto "x";
}
