require ["body", "fileinto"];
if body :text :contains "" { fileinto "AnyBody"; }
if body :raw :is "" { fileinto "EmptyRaw"; }
