# -*- test-case-name: tests.protocols.test_smtp_from_check -*-
"""Issue 16 #8: submission's From check and the store read one header.

The check used the stdlib parser, which skips a "From :" field and stops at
a line without a colon, while the store's reader (ENVELOPE, SEARCH,
HEADER.FIELDS) reads both: alice could submit mail that bob's and every
recipient's client showed as from bob.  Now the header shapes that readers
disagree on are refused at submission, and what is accepted shows in IMAP
ENVELOPE exactly as checked.  Real smtplib and imaplib against a real
server.
"""

from __future__ import annotations

import imaplib
import smtplib
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.protocols.test_smtp_wire import inbox

ALICE = "alice@example.com"
BOB = "bob@example.com"


def submit(server: Any, header: str) -> tuple[int, bytes]:
    """DATA's reply to alice's authenticated submission of header + body."""
    data = (header + "To: carol@example.net\r\nSubject: hello\r\n"
            "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <x@example.com>\r\n\r\nbody\r\n")
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as s:
        s.ehlo()
        s.login(ALICE, PASSWORD)
        s.mail(ALICE)
        assert s.rcpt(BOB)[0] == 250
        s.putcmd("data")
        assert s.getreply()[0] == 354
        s.send(smtplib.quotedata(data).encode() + b"\r\n.\r\n")
        code, text = s.getreply()
        # The session stays usable after a refusal.
        assert s.noop()[0] == 250
        return code, text


def envelope_from(server: Any) -> bytes:
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    try:
        imap.login(BOB, PASSWORD)
        imap.select("INBOX")
        _typ, data = imap.fetch("1:*", "(ENVELOPE)")
        return b"\n".join(d if isinstance(d, bytes) else d[0] for d in data if d)
    finally:
        imap.logout()


@pytest.mark.parametrize("header, reason", [
    ("From : Bob <bob@example.com>\r\nFrom: Alice <alice@example.com>\r\n", b"white space before the colon"),
    ("From: Alice <alice@example.com>\r\nFrom : Bob <bob@example.com>\r\n", b"white space before the colon"),
    ("Sender : bob@example.com\r\nFrom: alice@example.com\r\n", b"white space before the colon"),
    ("From: alice@example.com\r\nFrom: bob@example.com\r\n", b"More than one From"),
    ("X-Junk: 1\r\nthis line has no colon\r\nFrom: bob@example.com\r\nFrom: alice@example.com\r\n",
     b"neither a field"),
    ("From: Alice <alice@example.com>\r\nnot a field\r\nFrom: bob@example.com\r\n", b"neither a field"),
    ("From: alice@example.com\r\nSender: bob@example.com\r\n", b"not owned"),
])
def test_header_shapes_readers_disagree_on_are_refused(server: Any, header: str, reason: bytes) -> None:
    code, text = submit(server, header)
    assert code in (550, 553) and b"5." in text[:6] and reason in text, (code, text)
    assert inbox(server, BOB) == []


def test_what_is_accepted_is_what_envelope_shows(server: Any) -> None:
    code, _text = submit(server, 'From: "Alice" <alice@example.com> (not bob@example.com)\r\n')
    assert code == 250
    env = envelope_from(server)
    assert b'(("Alice" NIL "alice" "example.com"))' in env
    assert b'"bob"' not in env


def test_from_written_as_the_checker_reads_it(server: Any) -> None:
    # A display name that looks like an address is a name; the mailbox is
    # what the angle brackets hold, for the check and for ENVELOPE alike.
    code, text = submit(server, "From: bob@example.com <alice@example.com>\r\n")
    assert code == 250, text
    assert b'"alice" "example.com"' in envelope_from(server)
    code, text = submit(server, "From: alice@example.com <bob@example.com>\r\n")
    assert code == 553 and b"bob@example.com" in text
