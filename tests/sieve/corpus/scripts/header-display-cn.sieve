require "fileinto";
if header :contains "to" "销售部" { fileinto "销售部"; }
if header :contains "from" "陈静" { fileinto "ChenJing"; }
if header :is "subject" "Hello World plain 尾巴" { fileinto "Adjacent"; }
