require ["vacation", "fileinto"];
if not anyof (exists "list-id", header :is "precedence" ["bulk", "list", "junk"]) {
  vacation :days 7 "Away.";
}
fileinto "Archive";
