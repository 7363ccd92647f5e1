"""Filter rules: Sieve (RFC 5228) for users and domains (issue 18)."""
