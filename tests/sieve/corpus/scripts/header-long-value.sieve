require ["fileinto", "variables"];
if header :contains "x-long" "token0149" { fileinto "LongEnd"; }
if header :matches "x-long" "token0000 * token0149" { set :length "n" "${1}"; fileinto "Len${n}"; }
