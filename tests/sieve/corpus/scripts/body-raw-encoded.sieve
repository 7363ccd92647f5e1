require ["body", "fileinto"];
# :raw sees the transfer encoding, not the decoded text.
if body :raw :contains "pineapple" { fileinto "Decoded"; }
if body :raw :contains "Gr=F6=DFe" { fileinto "QP"; }
