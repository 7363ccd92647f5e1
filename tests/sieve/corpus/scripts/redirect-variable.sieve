require "variables";
# A redirect address from a header; invalid ones are a runtime error.
if header :matches "subject" "*" { redirect "${1}"; }
