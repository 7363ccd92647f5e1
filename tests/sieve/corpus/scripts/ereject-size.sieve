require "ereject";
if size :over 200K { ereject "Message too large for this mailbox."; }
