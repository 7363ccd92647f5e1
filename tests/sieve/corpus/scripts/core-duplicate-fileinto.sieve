require "fileinto";
fileinto "Work";
fileinto "Work";
fileinto "Archive";
