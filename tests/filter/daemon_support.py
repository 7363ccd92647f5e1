"""What the pipeline's daemon tests share: a `twistd -n xmail` with
example.com and two users, and reading a folder back over IMAP."""

from __future__ import annotations

import imaplib
import os
from typing import Any

from tests.support.daemon import Daemon

BOB = "bob@example.com"
CAROL = "carol@example.com"
PASSWORD = "filter test password 1"


def start_daemon(workdir: Any, extra: str = "") -> Daemon:
    """Listening on smtp, submission and imap; BOB and CAROL exist."""
    os.makedirs(workdir, exist_ok=True)
    daemon = Daemon(workdir, listeners=("smtp", "submission", "imap"), extra=extra)
    daemon.ctl("domain", "add", "example.com")
    for user in (BOB, CAROL):
        daemon.ctl("user", "add", user, "--password-stdin", stdin=PASSWORD + "\n")
    daemon.start()
    return daemon


def fetch(daemon: Daemon, user: str, folder: str = "INBOX") -> list[bytes]:
    """Every message of a folder, oldest first (read-only: flags unchanged)."""
    with imaplib.IMAP4("127.0.0.1", daemon.ports["imap"]) as imap:
        imap.login(user, PASSWORD)
        imap.select(folder, readonly=True)
        _typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
        return [item[1] for item in data if isinstance(item, tuple)]
