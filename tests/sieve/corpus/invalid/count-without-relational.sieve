if header :count "ge" "to" "2" { keep; }
