require ["body", "fileinto"];
if body :content "text/calendar" :contains "VEVENT" { fileinto "Calendar"; }
if body :content "text/html" :contains "sale" { fileinto "Newsletters"; }
