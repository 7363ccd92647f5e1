require ["reject", "fileinto"];
# fileinto then reject: an action conflict, runtime error -> keep.
if header :contains "subject" "Cheap" { fileinto "Junk"; reject "no"; }
