require ["body", "fileinto"];
if body :text :contains ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa", "lambda", "report data 999", "mu"] { fileinto "Greek"; }
