require "fileinto";
if exists "x-spam-flag" { fileinto "Junk"; stop; }
elsif exists "list-id" { fileinto "Lists"; }
if exists "list-id" { fileinto "Lists/Dev"; }
