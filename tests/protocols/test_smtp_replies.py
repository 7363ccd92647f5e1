# -*- test-case-name: tests.protocols.test_smtp_replies -*-
"""The reply catalog itself: every reply well-formed and consistent."""

from __future__ import annotations

import re

import pytest

from xmail.protocols.smtp import replies
from xmail.protocols.smtp.replies import Reply

CATALOG = {name: value for name, value in vars(replies).items() if isinstance(value, Reply)}
# RFC 3463 §3.3-3.8: subject 0-7, detail 0-999
ENHANCED = re.compile(r"\A[245]\.[0-7]\.[0-9]{1,3}\Z")
WITHOUT_ENHANCED = {"GREETING", "HELO_OK", "START_MAIL_INPUT", "AUTH_CHALLENGE"}


@pytest.mark.parametrize("name", sorted(CATALOG))
def test_reply_is_well_formed(name: str) -> None:
    reply = CATALOG[name]
    if name in WITHOUT_ENHANCED:
        assert reply.enhanced == ""
    else:
        assert ENHANCED.match(reply.enhanced), name
        assert reply.enhanced[0] == str(reply.code)[0]
    wire = reply.format("x", "y").to_bytes()
    assert re.fullmatch(rb"[2-5][0-9]{2} [^\r\n]*\r\n", wire), wire


@pytest.mark.parametrize("name, code, enhanced", [
    ("UNKNOWN_USER", 550, "5.1.1"),
    ("RELAY_DENIED", 554, "5.7.1"),
    ("MAILBOX_FULL", 452, "4.2.2"),
    ("MAILBOX_FULL_PERMANENT", 552, "5.2.2"),
    ("MESSAGE_TOO_BIG", 552, "5.3.4"),
    ("AUTH_FAILED", 535, "5.7.8"),
    ("AUTH_REQUIRED", 530, "5.7.0"),
    ("SENDER_NOT_OWNED", 553, "5.7.1"),
    ("FROM_NOT_OWNED", 553, "5.7.1"),
    ("QUEUE_UNAVAILABLE", 451, "4.3.0"),
    ("IDLE_TIMEOUT", 421, "4.4.2"),
    ("TOO_MANY_RECIPIENTS", 452, "4.5.3"),
    ("NON_ASCII_NEEDS_SMTPUTF8", 553, "5.6.7"),
])
def test_issue_codes(name: str, code: int, enhanced: str) -> None:
    assert (CATALOG[name].code, CATALOG[name].enhanced) == (code, enhanced)


def test_multiline_reply() -> None:
    wire = replies.HELO_OK.to_bytes(["mx.example", "PIPELINING", "SIZE 10"])
    assert wire == b"250-mx.example\r\n250-PIPELINING\r\n250 SIZE 10\r\n"
    wire = replies.OK.to_bytes(["a", "b"])
    assert wire == b"250-2.0.0 a\r\n250 2.0.0 b\r\n"  # RFC 2034 §4: code on every line


def test_text_cannot_break_the_line() -> None:
    wire = replies.SENDER_NOT_OWNED.format("a\r\n250 fake", "u").to_bytes()
    assert wire.count(b"\r\n") == 1


def test_class_mismatch_rejected() -> None:
    with pytest.raises(ValueError):
        Reply(250, "5.0.0", "no")
    with pytest.raises(ValueError):
        Reply(600, "", "no")
