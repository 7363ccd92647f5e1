require ["variables", "fileinto"];
set "Folder" "Work";
set "FOLDER" "${folder}/Projects";
fileinto "${fOlDeR}";
