require "fileinto";
if exists ["from", "x-does-not-exist"] { fileinto "Never"; }
if exists ["From", "SUBJECT"] { fileinto "Both"; }
