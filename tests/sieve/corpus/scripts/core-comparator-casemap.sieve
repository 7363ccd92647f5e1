require "fileinto";
if header :is :comparator "i;octet" "subject" "lunch tomorrow?" { fileinto "Octet"; }
if header :is :comparator "i;ascii-casemap" "subject" "LUNCH TOMORROW?" { fileinto "Casemap"; }
