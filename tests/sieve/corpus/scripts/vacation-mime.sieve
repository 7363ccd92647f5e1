require "vacation";
vacation :mime :subject "Away" text:
Content-Type: text/plain; charset=utf-8

Je suis absent.
.
;
