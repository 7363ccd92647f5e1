keep;
require "fileinto";
fileinto "x";
