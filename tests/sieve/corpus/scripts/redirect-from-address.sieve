require "variables";
if address :matches :localpart "from" "*" { redirect "${1}@forward.example"; }
