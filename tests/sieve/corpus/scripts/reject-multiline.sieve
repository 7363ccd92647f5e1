require "reject";
if address :domain :is "from" "cheap.example" {
  reject text:
Your message was refused.
Please stop sending offers.
.
;
}
