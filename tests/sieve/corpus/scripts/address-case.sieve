require "fileinto";
# i;ascii-casemap for addresses: MAILER-DAEMON == mailer-daemon.
if address :all :is "from" "mailer-daemon@MX.EXAMPLE.NET" { fileinto "Bounces"; }
if address :localpart :is "from" "MAILER-DAEMON" { fileinto "Daemon"; }
