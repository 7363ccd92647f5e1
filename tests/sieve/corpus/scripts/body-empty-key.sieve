require ["body", "fileinto"];
if body :text :contains "" { fileinto "AnyBody"; }
if body :raw :is "" { fileinto "EmptyRaw"; }
if body :raw :contains "" { fileinto "AnyRaw"; }
if body :content "text" :is "" { fileinto "EmptyText"; }
