require "vacation";
vacation :days 0 :subject "Away" "Gone fishing.";
