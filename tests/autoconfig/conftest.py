"""Settings shaped like a production server, for the document builders."""

from __future__ import annotations

import pytest

from xmail.autoconfig.model import ClientSettings, client_settings
from xmail.config import Settings, parse

PRODUCTION_TOML = """
[server]
hostname = "mail.example.com"

[listen]
smtp = "tcp:25"
submission = "tcp:587"
submissions = "tcp:465"
pop3 = "tcp:110"
pop3s = "tcp:995"
imap = "tcp:143"
imaps = "tcp:993"
http = "tcp:80"
"""

# listener -> (protocol, port, security) that PRODUCTION_TOML must produce
EXPECTED = {
    "imaps": ("imap", 993, "SSL"),
    "imap": ("imap", 143, "STARTTLS"),
    "pop3s": ("pop3", 995, "SSL"),
    "pop3": ("pop3", 110, "STARTTLS"),
    "submissions": ("smtp", 465, "SSL"),
    "submission": ("smtp", 587, "STARTTLS"),
}


@pytest.fixture
def production() -> Settings:
    return parse(PRODUCTION_TOML, "production.toml")


@pytest.fixture
def servers(production: Settings) -> ClientSettings:
    return client_settings(production)
