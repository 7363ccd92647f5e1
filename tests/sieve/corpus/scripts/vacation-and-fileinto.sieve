require ["vacation", "fileinto"];
fileinto "Archive";
vacation :days 1 :subject "Received" "Your message was received.";
