require ["date", "relational", "fileinto"];
if date :is "date" "weekday" ["0", "6"] { fileinto "Weekend"; }
if date :value "ge" "date" "hour" "17" { fileinto "AfterHours"; }
