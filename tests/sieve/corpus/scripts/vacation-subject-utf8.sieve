require "vacation";
vacation :subject "自动回复：休假中" :from "\"销售部\" <sales@example.com>" "我正在休假。";
