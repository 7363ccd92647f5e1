require ["vacation", "vacation-seconds"];
vacation :seconds 3600 :subject "In a meeting" :handle "meeting" "I will answer within the hour.";
