require "fileinto";
if exists "from" {
 if exists "to" {
  if exists "subject" {
   if header :contains "subject" "e" {
    if not header :contains "subject" "zzz" {
     if size :under 1M {
      fileinto "Deep";
     }
    }
   }
  } else { fileinto "NoSubject"; }
 } else { fileinto "NoTo"; }
}
