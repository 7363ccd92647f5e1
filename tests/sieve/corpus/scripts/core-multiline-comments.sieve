require ["fileinto"];
/* A bracketed comment
   over several lines, with "quotes" and ; inside */
# hash comment
if header :contains "subject" text:
report
.
{ fileinto "Work"; } # trailing comment
