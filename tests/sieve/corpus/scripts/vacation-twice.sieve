require "vacation";
# Two vacation actions: a runtime error in Pigeonhole when both run.
if exists "from" { vacation "one"; }
if exists "subject" { vacation "two"; }
