require ["fileinto","imap4flags","reject","vacation","envelope","body","relational","comparator-i;ascii-numeric","copy","variables"];
# rule:[Boss]
if anyof (address :is "from" "boss@example.com", header :contains "subject" "URGENT")
{
	addflag "\\Flagged";
	fileinto "Work";
	stop;
}
# rule:[Dev list]
if header :contains "list-id" "dev.lists.example.org"
{
	fileinto "Lists/Dev";
	stop;
}
# rule:[Announce]
if header :contains "list-id" "announce"
{
	fileinto :flags "\\Seen" "Lists/Announce";
	stop;
}
# rule:[Spam]
if anyof (header :is "x-spam-flag" "YES", header :contains "x-spam-status" "Yes,")
{
	fileinto "Junk";
	stop;
}
# rule:[Receipts]
if anyof (header :contains "subject" "receipt", header :contains "subject" "invoice", address :localpart :is "from" "billing")
{
	fileinto "Receipts";
	stop;
}
# rule:[Family]
if address :domain :is "from" "family.example"
{
	fileinto "Family";
}
# rule:[Newsletters]
if anyof (header :is "precedence" "bulk", exists "list-unsubscribe")
{
	fileinto "Newsletters";
	stop;
}
# rule:[Big]
if size :over 150K
{
	fileinto "Archive";
}
# rule:[Calendar]
if body :content "text/calendar" :contains "METHOD:REQUEST"
{
	fileinto :copy "Work";
}
# rule:[Bounces]
if address :localpart :is "from" "MAILER-DAEMON"
{
	discard;
	stop;
}
# rule:[Auto]
if header :matches "auto-submitted" "auto-*"
{
	addflag "\\Seen";
}
# rule:[Many recipients]
if address :count "ge" :comparator "i;ascii-numeric" ["to","cc"] "5"
{
	fileinto "Archive";
}
# rule:[Chinese]
if header :contains "subject" ["销售", "订单", "会议"]
{
	fileinto "销售部";
}
# rule:[Partner]
if address :domain :is "from" "partner.example.net"
{
	fileinto :copy "Work/Projects";
}
# rule:[Old]
if header :contains "subject" "2019"
{
	fileinto "Archive/2026";
}
# rule:[Photos]
if header :contains "subject" "photos"
{
	redirect :copy "photos@family.example";
}
# rule:[Notifications]
if header :contains "from" "notifications@"
{
	fileinto :flags "\\Seen" "Archive";
	stop;
}
# rule:[No subject]
if not exists "subject"
{
	addflag "NoSubject";
}
# rule:[Disk]
if header :value "ge" :comparator "i;ascii-numeric" "x-disk-percent" "95"
{
	redirect "ops@example.com";
}
# rule:[Lottery]
if header :contains "subject" "WON"
{
	reject "No thanks.";
}
