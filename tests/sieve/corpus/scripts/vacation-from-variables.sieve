require ["vacation", "variables", "envelope"];
if envelope :matches "to" "*@*" { set "me" "${1}"; set "dom" "${2}"; }
vacation :from "${me}@${dom}" :addresses ["${me}@${dom}"] :subject "Away: ${me}" "I am away.";
