# -*- test-case-name: tests.test_addresses -*-
"""xmail.addresses: the one address/domain rule, IDNA 2008 (issue 14).

Unit cases, then the same rule seen from the directory, SMTP RCPT and IMAP
login of a real server: faß.de is xn--fa-hia.de, never fass.de (the stdlib
IDNA 2003 codec mapped ß to ss, so a user of faß.de received fass.de's mail
and could log in as it).
"""

from __future__ import annotations

import imaplib
import smtplib
from typing import Any

import pytest

from tests.conftest import PASSWORD
from xmail.addresses import AddressError, normalize_address, normalize_domain


@pytest.mark.parametrize("text, expected", [
    ("faß.de", "xn--fa-hia.de"),
    ("FASS.DE", "fass.de"),
    ("XN--FA-HIA.DE.", "xn--fa-hia.de"),
    ("bücher.example", "xn--bcher-kva.example"),
    ("例え.テスト", "xn--r8jz45g.xn--zckzah"),
    ("ＥＸＡＭＰＬＥ.com", "example.com"),  # UTS #46 width mapping
])
def test_domains_follow_uts46_and_idna2008(text: str, expected: str) -> None:
    assert normalize_domain(text) == expected


def test_sharp_s_is_not_ss() -> None:
    assert normalize_domain("faß.de") != normalize_domain("fass.de")
    assert normalize_address("Alice@Faß.de") == "alice@xn--fa-hia.de"


@pytest.mark.parametrize("text", [
    "", "xn--zz.de", "a..b", "-a.de", "a-.de", "a_b.de", "x.123", "a\r\n.de", "a" * 64 + ".de",
    ".".join(["b" * 60] * 5),
])
def test_bad_domains_refused(text: str) -> None:
    with pytest.raises(AddressError):
        normalize_domain(text)


@pytest.mark.parametrize("text", [
    "alice", "@example.com", "a/b@example.com", ".a@example.com", "a..b@example.com",
    "älice@example.com", "a" * 65 + "@example.com", "a b@example.com",
])
def test_bad_addresses_refused(text: str) -> None:
    with pytest.raises(AddressError):
        normalize_address(text)


def test_directory_keeps_fass_and_fass_sharp_apart(make_server: Any) -> None:
    srv = make_server()
    directory = srv.ctx.directory
    directory.add_domain("faß.de")
    assert directory.is_local_domain("xn--fa-hia.de")
    assert not directory.is_local_domain("fass.de")
    srv.add_user("anna@xn--fa-hia.de")
    assert directory.resolve("Anna@Faß.de") == "anna@xn--fa-hia.de"
    assert directory.resolve("anna@fass.de") is None


def test_smtp_rcpt_and_imap_login_keep_the_domains_apart(make_server: Any) -> None:
    srv = make_server()
    srv.add_domain("faß.de")
    srv.add_domain("fass.de")
    srv.add_user("anna@xn--fa-hia.de")
    srv.add_user("anna@fass.de", password="other-" + PASSWORD)
    with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as s:
        s.ehlo("client.example")
        s.mail("someone@sender.example")
        code, _ = s.rcpt("anna@xn--fa-hia.de")
        assert code == 250
        s.data(b"From: someone@sender.example\r\nSubject: for fass-sharp\r\n\r\nhi\r\n")
    # The message went to faß.de's anna only.
    mine = srv.call(srv.mailbox("anna@xn--fa-hia.de").folder, "INBOX").records()
    theirs = srv.call(srv.mailbox("anna@fass.de").folder, "INBOX").records()
    assert (len(mine), len(theirs)) == (1, 0)
    imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
    try:
        # faß.de's password does not open fass.de, and the reverse.
        with pytest.raises(imaplib.IMAP4.error):
            imap.login("anna@fass.de", PASSWORD)
    finally:
        imap.shutdown()
    imap = imaplib.IMAP4("127.0.0.1", srv.port("imap"))
    try:
        assert imap.login("anna@xn--fa-hia.de", PASSWORD)[0] == "OK"
        assert imap.select("INBOX") == ("OK", [b"1"])
    finally:
        imap.logout()
