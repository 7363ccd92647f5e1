require "fileinto";
if header :is "subject" "Lunch tomorrow?" { fileinto "Family"; }
