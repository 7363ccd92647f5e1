require "fileinto";
# \* and \? match themselves; ? one character.
if header :matches "subject" "*\?" { fileinto "Questions"; }
if header :matches "subject" "*!!!" { fileinto "Junk"; }
if header :matches "subject" "Re: ?e: *" { fileinto "Work"; }
