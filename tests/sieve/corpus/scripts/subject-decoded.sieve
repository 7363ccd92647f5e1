require "fileinto";
if header :contains "subject" "季度" { fileinto "Quarter"; }
if header :contains "subject" "Réunion" { fileinto "Reunion"; }
if header :contains "subject" "周五" { fileinto "Friday"; }
if header :contains "subject" "✓" { fileinto "Check"; }
