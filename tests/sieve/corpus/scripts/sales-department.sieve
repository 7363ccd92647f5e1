require ["fileinto", "imap4flags", "variables", "envelope", "subaddress"];
# A Chinese sales team: orders, reports, meetings.
if header :contains "subject" "订单" { fileinto :flags "\\Flagged" "销售部/订单"; stop; }
if header :contains "subject" "报告" { fileinto "销售部"; }
if header :contains "from" ["张伟", "王芳"] { addflag "Colleague"; }
if envelope :user :is "to" "sales" { fileinto :flags "$Sales" "销售部"; }
