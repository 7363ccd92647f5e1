require ["fileinto", "variables", "relational"];
if size :over 0 { fileinto "NonEmpty"; }
if size :under 0 { discard; }
