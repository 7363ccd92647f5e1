require ["vacation", "variables"];
if address :matches :domain "from" "*" { set "d" "${1}"; }
vacation :handle "per-${d}" :days 2 "Per-domain reply.";
