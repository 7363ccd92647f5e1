if header :contains "subject" "Lunch" { redirect "Assistant <assistant@example.com>"; }
