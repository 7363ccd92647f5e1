# -*- test-case-name: tests.protocols.test_imap_search_address -*-
"""Issue 15: SEARCH FROM/TO/CC/BCC match the parsed addresses (display
names and local@domain), not the raw header text with its comments.
Real smtplib delivery, real imaplib SEARCH against a real server."""

from __future__ import annotations

import imaplib
import smtplib
from typing import Any

import pytest

from tests.conftest import PASSWORD

BOB = "bob@example.com"
MESSAGES = [
    'From: "x" <a@b.c> (comment z)\r\nTo: Bob <bob@example.com> (old friend)\r\n'
    'Cc: =?utf-8?q?J=C3=BCrgen?= <jurgen@example.org>, (nobody) carol@example.net\r\nSubject: one\r\n',
    "From: Dee <dee@example.org>\r\nTo: undisclosed-recipients:;\r\nSubject: two (comment)\r\n",
]


@pytest.fixture
def imap(server: Any) -> Any:
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
        for header in MESSAGES:
            s.sendmail("x@b.c", [BOB], (header + "\r\nbody\r\n").encode())
    client = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    client.login(BOB, PASSWORD)
    assert client.select("INBOX") == ("OK", [b"2"])
    yield client
    client.logout()


def search(client: Any, *criteria: str) -> list[int]:
    if not criteria[-1].isascii():  # 8-bit text goes as a literal
        client.literal = criteria[-1].strip('"').encode()
        criteria = criteria[:-1]
    typ, data = client.search("UTF-8", *criteria)
    assert typ == "OK"
    return [int(n) for n in data[0].split()]


@pytest.mark.parametrize("criteria, expected", [
    (("FROM", '"comment"'), []),  # a comment is not part of the address
    (("FROM", '"a@b"'), [1]),
    (("FROM", '"x a@b.c"'), [1]),  # the display name is, before the address
    (("FROM", '"dee@example.org"'), [2]),
    (("TO", '"old friend"'), []),
    (("TO", '"bob <bob@"'), []),  # the angle brackets are syntax, not text
    (("TO", '"bob bob@example.com"'), [1]),  # name and address, as parsed
    (("CC", '"nobody"'), []),
    (("CC", '"carol@example.net"'), [1]),
    (("CC", '"jürgen"'), [1]),  # RFC 2047 display names decoded
    (("TO", '""'), [1, 2]),  # the field exists
    (("SUBJECT", '"comment"'), [2]),  # SUBJECT stays plain text
])
def test_address_keys_match_the_parsed_addresses(imap: Any, criteria: tuple[str, ...],
                                                 expected: list[int]) -> None:
    assert search(imap, *criteria) == expected
