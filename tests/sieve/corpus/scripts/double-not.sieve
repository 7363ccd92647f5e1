require "fileinto";
if not not exists "subject" { fileinto "HasSubject"; }
if not anyof (not exists "from", not exists "to") { fileinto "FromAndTo"; }
if allof (anyof (false, true), not allof (true, false)) { keep; }
