require "vacation";
vacation :days "x" "away";
