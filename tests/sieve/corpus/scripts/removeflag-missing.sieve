require "imap4flags";
removeflag "\\Deleted";
addflag "\\Answered";
removeflag "\\answered";
