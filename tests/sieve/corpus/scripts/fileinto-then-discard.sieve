require "fileinto";
fileinto "Work";
discard;
