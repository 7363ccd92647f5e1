require "fileinto";
if size :over 160 { fileinto "Over160"; }
if size :under 161 { fileinto "Under161"; }
if size :over 225079 { fileinto "Big"; }
