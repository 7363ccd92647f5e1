require "vacation";
vacation "I am on vacation until January 4. Your mail will be read then.";
