require ["body", "fileinto"];
if body :raw :matches "*Line 02999*FINAL-MARKER*" { fileinto "BigMatch"; }
if body :text :matches "*quick*lazy*quick*lazy*zzz*" { fileinto "Never"; }
