require "fileinto";
# i;ascii-casemap folds ASCII letters only.
if header :contains "subject" "réunion" { fileinto "Lower"; }
if header :contains "subject" "RÉUNION" { fileinto "Upper"; }
if header :contains "subject" "BUDGET" { fileinto "Budget"; }
