require ["fileinto", "variables"];
if address :localpart :matches "to" "*doe*" { fileinto "Doe/${1}/${2}"; }
if address :all :matches "reply-to" "*@*" { fileinto "RT-${2}"; }
