require "fileinto";
if not exists ["subject", "date"] { fileinto "Junk"; stop; }
if exists "list-id" { fileinto "Lists"; }
if exists ["in-reply-to", "references"] { fileinto "Work"; }
