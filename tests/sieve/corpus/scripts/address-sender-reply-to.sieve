require "fileinto";
# Sender and Reply-To are address headers too (RFC 5228 §5.1).
if address :contains "sender" "bounces" { fileinto "Bounces"; }
if address :domain :is "reply-to" "example.org" { fileinto "ReplyTo"; }
