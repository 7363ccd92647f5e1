require "vacation";
vacation :days 14 :subject "Urlaub" :from "user@example.com"
  :addresses ["user@example.com", "u.ser@example.com"] :handle "urlaub-2026"
  text:
Ich bin im Urlaub.
In dringenden Fällen: boss@example.com
.
;
