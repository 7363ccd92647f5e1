"""A tiny raw IMAP client for transcript-style tests (one exchange, the
expected tagged status, the untagged lines), plus message samples."""

from __future__ import annotations

from typing import Any

from tests.support.clients import ImapClient, client_tls

_client_tls = client_tls  # the name some tests import


def message(subject: str = "hello", body: str = "hi there\r\n", sender: str = "bob@example.com",
            to: str = "alice@example.com", extra: str = "") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{abs(hash(subject + body))}@x>\r\n"
            f"{extra}\r\n{body}").encode()


# The raw IMAP client lives in tests.support.clients (one per protocol).
Wire = ImapClient


def deliver(server: Any, address: str, data: bytes, folder: str = "INBOX", flags: tuple[str, ...] = ()
            ) -> Any:
    """Local delivery through the running store (what SMTP and the queue do)."""
    return server.call(server.ctx.store.deliver, address, data, folder, flags)
