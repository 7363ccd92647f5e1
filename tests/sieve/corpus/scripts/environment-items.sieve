require ["environment", "fileinto", "variables"];
if environment :matches "name" "*" { set "n" "${1}"; }
if environment :is "phase" "post" { set "p" "post"; }
if environment :matches "location" "*" { fileinto "${n}-${p}-${1}"; }
