require "fileinto";
if header :matches "subject" "*\\**" { fileinto "Star"; }
if header :matches "subject" "*\\?" { fileinto "EndsWithQ"; }
if header :matches "subject" "*$*" { fileinto "Dollar"; }
