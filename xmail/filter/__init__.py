"""Mail protection: the delivery pipeline and its stages (issue 17)."""
