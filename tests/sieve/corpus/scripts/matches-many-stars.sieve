require ["fileinto"];
if header :matches "x-long" "*t*o*k*e*n*0*1*4*9*" { fileinto "Stars"; }
if header :matches "subject" "*a*e*i*o*u*" { fileinto "Vowels"; }
