"""The scanner stages behind the real SMTP listeners of an in-process
server (tests/support/server.py), with the session's clamd and rspamd:
what a sending client and the recipient's mailbox see."""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.filter.scanners.support import closed_port, eicar_message, message
from tests.support.server import PASSWORD, RunningServer
from xmail.filter.pipeline import TEMPFAIL
from xmail.filter.scanners.stages import scanner_stages

BOB = "bob@example.com"


def with_scanners(server: RunningServer, work: Any, toml: str) -> None:
    """Put scanner stages built from `toml`'s [filter] into the running
    server's pipeline, where xmail.filter.build puts them: after the
    lists and authentication, before burst and signing."""
    from dataclasses import replace

    from xmail.config import parse

    settings = replace(server.settings, filter=parse(toml, "<test>").filter)
    stages = scanner_stages(settings, server.reactor, work)
    pipeline = server.ctx.core.pipeline
    names = [s.name for s in pipeline.stages]
    at = names.index("burst") if "burst" in names else len(names)
    pipeline.stages[at:at] = stages


@pytest.fixture
def mx(server: RunningServer, work: Any) -> Iterator[Callable[[str], RunningServer]]:
    """mx(toml) -> the server (example.com, alice and bob), scanners on."""

    def configured(toml: str) -> RunningServer:
        with_scanners(server, work, toml)
        return server

    yield configured


def mailbox(server: RunningServer, user: str, folder: str = "INBOX") -> list[bytes]:
    with imaplib.IMAP4("127.0.0.1", server.port("imap")) as imap:
        imap.login(user, PASSWORD)
        typ, _ = imap.select(folder, readonly=True)
        if typ != "OK":
            return []
        _typ, data = imap.fetch("1:*", "(BODY.PEEK[])")
        return [item[1] for item in data if isinstance(item, tuple)]


def send(server: RunningServer, data: bytes) -> tuple[int, bytes]:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=30) as smtp:
        smtp.ehlo("client.example.net")
        smtp.mail("alice@example.net")
        assert smtp.rcpt(BOB)[0] == 250
        return smtp.data(data)


def test_mx_verdicts_reach_the_client_and_the_mailbox(mx: Any, clamd: Any, rspamd: Any) -> None:
    mx = mx(f'[filter]\nclamd = "{clamd.unix}"\nrspamd = "{rspamd.url}"\n')
    code, text = send(mx, eicar_message())
    assert (code, text[:5]) == (554, b"5.7.1") and b"Xmail.Test.EICAR" in text
    code, text = send(mx, message("XMAIL-TEST-SPAM"))
    assert (code, text[:5]) == (550, b"5.7.1")
    assert send(mx, message("XMAIL-SCORE=7.5"))[0] == 250
    assert send(mx, message("Clean"))[0] == 250
    (inbox,) = mailbox(mx, BOB)
    (junk,) = mailbox(mx, BOB, "Junk")
    assert b"Subject: Clean" in inbox and b"X-Spam-Status: No, score=" in inbox
    assert b"Subject: XMAIL-SCORE=7.5" in junk and b"X-Spam-Status: Yes, score=7.5 required=6.0" in junk


def test_scanner_down_is_451_and_nothing_is_delivered(mx: Any) -> None:
    mx = mx(f'[filter]\nclamd = "tcp:127.0.0.1:{closed_port()}"\nscan_timeout = 1\n')
    assert [s.on_failure for s in mx.ctx.core.pipeline.stages if s.name == "antivirus"] == [TEMPFAIL]
    code, text = send(mx, message("Clean"))
    assert (code, text[:5]) == (451, b"4.7.1")
    assert mailbox(mx, BOB) == []


def test_scanner_down_with_accept_delivers_marked_unscanned(mx: Any) -> None:
    mx = mx(f'[filter]\nrspamd = "http://127.0.0.1:{closed_port()}"\n'
                      'on_scanner_failure = "accept"\nscan_timeout = 1\n')
    assert send(mx, message("Clean"))[0] == 250
    (inbox,) = mailbox(mx, BOB)
    assert b"X-Spam-Status: unscanned\r\n" in inbox
