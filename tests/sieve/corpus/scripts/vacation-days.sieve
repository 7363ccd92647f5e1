require "vacation";
vacation :days 3 :subject "Out of office" "Back next week.";
