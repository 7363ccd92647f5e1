require ["body", "fileinto"];
if body :text :contains "purchase" { fileinto "Text"; }
if body :text :contains "<b>" { fileinto "Tags"; }
if body :content "text/html" :contains "<b>" { fileinto "Html"; }
