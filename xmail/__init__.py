"""xmail: an enterprise mail server (SMTP, POP3, IMAP4) on Twisted."""

__version__ = "0.1.0"
