# fileinto without require
keep;
fileinto "Work";
