require ["body", "fileinto"];
# Decoded transfer encodings: quoted-printable latin-1 and base64 GB2312.
if body :text :contains "Größe" { fileinto "Angebote"; }
if body :text :contains "销售报告" { fileinto "销售部"; }
if body :text :contains "会议室" { fileinto "Meetings"; }
