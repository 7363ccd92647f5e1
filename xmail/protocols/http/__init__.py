"""HTTP listener: client auto-configuration (issue #7)."""
