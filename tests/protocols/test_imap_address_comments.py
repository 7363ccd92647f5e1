# -*- test-case-name: tests.protocols.test_imap_address_comments -*-
"""A comment before an address is not its name, on the wire (issue 14's one
address grammar, RFC 5322 §3.4): FETCH ENVELOPE sends NIL for it (the old
parser sent "Zoe)"), and SORT DISPLAYFROM (RFC 5957 §3) sorts it by its
address.  Mail arrives over SMTP, is read over IMAP, real sockets."""

from __future__ import annotations

import smtplib
from typing import Any

from tests.protocols.imap_support import Wire

FROMS = ["(Zoe) alice@example.com", "zed@example.com (Adam)", "Bob <bob@example.com>"]


def test_envelope_and_displayfrom_of_comments(server: Any) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as s:
        for n, sender in enumerate(FROMS, 1):
            data = (f"From: {sender}\r\nTo: alice@example.com\r\nSubject: m{n}\r\n"
                    f"Message-ID: <m{n}@example.com>\r\n\r\nbody\r\n")
            assert s.sendmail("x@remote.example", ["alice@example.com"], data) == {}
    with Wire(server.port("imap")) as w:
        w.login()
        w.ok("SELECT INBOX")
        lines = w.ok("FETCH 1:3 (ENVELOPE)")
        assert b'(NIL NIL "alice" "example.com")' in lines[0], lines[0]
        assert b"Zoe" not in lines[0]
        assert b'(("Adam" NIL "zed" "example.com"))' in lines[1], lines[1]
        assert b'(("Bob" NIL "bob" "example.com"))' in lines[2], lines[2]
        # "Adam" < "alice@example.com" < "Bob"; the old name "Zoe)" sorted last.
        assert w.ok("SORT (DISPLAYFROM) UTF-8 ALL") == [b"* SORT 2 1 3"]
        assert w.ok("SORT (REVERSE DISPLAYFROM) UTF-8 ALL") == [b"* SORT 3 1 2"]
