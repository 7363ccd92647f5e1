# -*- test-case-name: tests.protocols.test_smtp_smuggling -*-
"""Regression tests for SMTP security bug classes, against a real server.

- STARTTLS command injection (CVE-2011-0411, RFC 3207 §4.2): plaintext
  pipelined after STARTTLS must be thrown away, and nothing learnt before
  TLS (EHLO, AUTH) may survive it.
- SMTP smuggling (CVE-2023-51764 and relatives): only <CRLF>.<CRLF> ends
  DATA; `\\n.\\n` and friends are message content, so no second message
  can be hidden inside the first.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.protocols.test_smtp_wire import Wire, inbox


def test_starttls_injection_ignored(server: Any) -> None:
    w = Wire(server.port("smtp"))
    w.cmd("EHLO c")
    w.send(b"STARTTLS\r\nMAIL FROM:<evil@x.org>\r\nRCPT TO:<bob@example.com>\r\n")
    assert w.reply().startswith("220 2.0.0")
    w.starttls()
    assert "PIPELINING" in w.cmd("EHLO c")
    # Had the injected MAIL run, this RCPT would be accepted.
    assert w.cmd("RCPT TO:<bob@example.com>").startswith("503 5.5.1")
    assert w.cmd("MAIL FROM:<ok@x.org>").startswith("250")
    assert w.cmd("RCPT TO:<bob@example.com>").startswith("250")
    w.close()


def test_starttls_forgets_earlier_auth_and_ehlo(server: Any) -> None:
    w = Wire(server.port("submission"))
    w.cmd("EHLO c")
    assert w.cmd("AUTH PLAIN " + base64.b64encode(f"\0alice@example.com\0{PASSWORD}".encode()).decode()
                 ).startswith("235")
    assert w.cmd("STARTTLS").startswith("220")
    w.starttls()
    assert w.cmd("MAIL FROM:<alice@example.com>").startswith("503")  # EHLO forgotten
    ehlo = w.cmd("EHLO c")
    assert "STARTTLS" not in ehlo and "AUTH PLAIN LOGIN" in ehlo
    assert w.cmd("MAIL FROM:<alice@example.com>").startswith("530 5.7.0")  # AUTH forgotten
    w.close()


def test_starttls_twice_refused(server: Any) -> None:
    w = Wire(server.port("smtp"))
    w.cmd("EHLO c")
    assert w.cmd("STARTTLS").startswith("220")
    w.starttls()
    w.cmd("EHLO c")
    assert w.cmd("STARTTLS").startswith("503")
    w.close()


@pytest.mark.parametrize(
    "fake_end",
    [b"\n.\n", b"\n.\r\n", b"\r\n.\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n"],
    ids=["lf.lf", "lf.crlf", "crlf.lf", "cr.cr", "crlf.cr", "cr.crlf"],
)
def test_smuggled_message_stays_content(server: Any, fake_end: bytes) -> None:
    w = Wire(server.port("smtp"))
    w.cmd("EHLO c")
    w.send(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
    assert [r[:3] for r in w.replies(3)] == ["250", "250", "354"]
    w.send(b"Subject: first\r\n\r\nhello" + fake_end
           + b"MAIL FROM:<admin@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n"
           + b"Subject: smuggled\r\n\r\nsmuggled body\r\n.\r\n")
    reply = w.reply()
    assert reply.startswith("250 2.0.0")
    assert w.cmd("QUIT").startswith("221")
    assert inbox(server, "bob@example.com") == []
    [stored] = inbox(server, "alice@example.com")
    assert b"Subject: smuggled" in stored
    # Stored with CRLF line endings only: a relay will dot-stuff every line.
    assert b"\n" not in stored.replace(b"\r\n", b"") and b"\r" not in stored.replace(b"\r\n", b"")


def test_bdat_content_is_never_commands(server: Any) -> None:
    w = Wire(server.port("smtp"))
    w.cmd("EHLO c")
    body = b"Subject: x\r\n\r\n.\r\nMAIL FROM:<e@x>\r\nRCPT TO:<bob@example.com>\r\n"
    w.send(b"MAIL FROM:<a@x.org>\r\nRCPT TO:<alice@example.com>\r\nBDAT %d LAST\r\n" % len(body) + body)
    assert [r[:3] for r in w.replies(3)] == ["250", "250", "250"]
    assert inbox(server, "bob@example.com") == []
    w.close()
