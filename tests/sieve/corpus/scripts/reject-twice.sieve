require "reject";
if exists "from" { reject "one"; }
if exists "date" { reject "two"; }
