require ["body", "fileinto"];
# :text looks at text parts only: not into the application/pdf part.
if body :text :contains "JVBERi0" { fileinto "PdfAsText"; }
if body :content "application/pdf" :contains "JVBERi0" { fileinto "PdfContent"; }
