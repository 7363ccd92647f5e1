"""Helpers (no tests here): a raw SMTP client for acceptance tests that smtplib cannot express
(pipelining in one packet, BDAT, injected bytes, bare line endings)."""

from __future__ import annotations

from typing import Any

from tests.support.clients import SmtpClient, client_tls

# The raw SMTP client lives in tests.support.clients (one per protocol).
Wire = SmtpClient
_client_tls = client_tls


def inbox(server: Any, address: str, folder: str = "INBOX") -> list[bytes]:
    """Every message in a folder, read from the store's files."""
    mailbox = server.mailbox(address)
    box = server.call(mailbox.folder, folder)
    out = []
    for record in box.records():
        with box.open_message(record.uid) as f:
            out.append(f.read())
    return out


def folder_records(server: Any, address: str, folder: str) -> list[Any]:
    mailbox = server.mailbox(address)
    return server.call(mailbox.folder, folder).records()
