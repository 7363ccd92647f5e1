"""rspamd's /checkv2 client: the reply's checks, the envelope headers,
then the session's real rspamd and HTTP servers that misbehave."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from twisted.internet import defer
from twisted.web import resource, server

from tests.filter.scanners.support import MisbehavingServer, closed_port, message, spool, transaction
from tests.support.server import in_reactor, reactor_running
from xmail.filter.interfaces import SUBMISSION, Recipient
from xmail.filter.scanners import ScannerError
from xmail.filter.scanners.rspamd import MAX_SYMBOLS, RspamdClient, envelope_headers, parse_reply

GOOD = {"is_skipped": False, "score": 7.25, "required_score": 15.0, "action": "add header",
        "symbols": {"A": {"name": "A", "score": 1.0}, "B": {"name": "B", "score": 6.25}}}


def test_a_reply_is_parsed() -> None:
    result = parse_reply(json.dumps(GOOD).encode())
    assert (result.score, result.required_score, result.action) == (7.25, 15.0, "add header")
    assert result.symbol_names == ["B", "A"]  # highest score first


@pytest.mark.parametrize("body", [
    b"", b"not json", b"[1, 2]", b'{"score": "high"}', b'{"score": 1.0}',
    json.dumps({**GOOD, "score": None}).encode(), json.dumps({**GOOD, "action": 3}).encode(),
    json.dumps({**GOOD, "symbols": []}).encode(), b'{"score": NaN, "required_score": 1, "action": "x"}',
    json.dumps(GOOD).encode()[:-10], b'{"error": "Cannot parse input"}', b"\xff\xfe\x00",
])
def test_garbage_is_a_scanner_error(body: bytes) -> None:
    with pytest.raises(ScannerError):
        parse_reply(body)


def test_symbols_are_capped() -> None:
    many = {**GOOD, "symbols": {f"S{i}": {"score": i} for i in range(5000)}}
    assert len(parse_reply(json.dumps(many).encode()).symbols) == MAX_SYMBOLS


@given(st.binary(max_size=500))
def test_any_body_parses_or_raises_scanner_error(body: bytes) -> None:
    try:
        parse_reply(body)
    except ScannerError:
        pass


def test_the_envelope_travels_in_headers_without_line_breaks() -> None:
    tx = transaction(b"x", helo="evil\r\nX-Injected: 1", mail_from="",
                     recipients=(Recipient("a@example.com", "a@example.com"),
                                 Recipient("b@remote.net", None)))
    headers = envelope_headers(tx)
    assert headers.getRawHeaders(b"IP") == [b"192.0.2.1"]
    assert headers.getRawHeaders(b"Helo") == [b"evil  X-Injected: 1"]
    assert headers.getRawHeaders(b"From") == [b"<>"]
    assert headers.getRawHeaders(b"Rcpt") == [b"a@example.com", b"b@remote.net"]
    assert headers.getRawHeaders(b"Queue-Id") == [tx.id.encode()]
    assert headers.getRawHeaders(b"User") is None
    sub = transaction(b"x", mode=SUBMISSION, user="alice@example.com")
    assert envelope_headers(sub).getRawHeaders(b"User") == [b"alice@example.com"]


def check(client: RspamdClient, tx: Any) -> Any:
    return in_reactor(client.check, tx)


def test_real_rspamd_scores_a_message_streamed_from_the_spool(rspamd: Any, work: Any, tmp_path: Any) -> None:
    client = RspamdClient(rspamd.url, reactor_running(), work, timeout=10)
    clean = check(client, transaction(spool(tmp_path, message())))
    assert clean.score < 6 and clean.action == "no action"
    scored = check(client, transaction(spool(tmp_path, message("Offer XMAIL-SCORE=7.5"))))
    assert scored.score == pytest.approx(7.5) and "XMAIL_TEST_SCORE" in scored.symbol_names
    spam = check(client, transaction(message("XMAIL-TEST-SPAM now")))
    assert spam.score >= 20 and spam.action == "reject"


def test_real_rspamd_sees_the_submitter(rspamd: Any, work: Any) -> None:
    # rspamd's own history records the authenticated user it was given.
    client = RspamdClient(rspamd.url, reactor_running(), work, timeout=10)
    tx = transaction(message("From the office"), mode=SUBMISSION, user="alice@example.com")
    check(client, tx)
    with open(rspamd.log, encoding="utf-8", errors="replace") as f:
        log = f.read()
    assert f"qid: <{tx.id}>" in log and "user: alice@example.com" in log


def test_a_big_message_is_streamed(rspamd: Any, work: Any, tmp_path: Any) -> None:
    body = ("All work and no play makes Jack a dull boy. " * 20 + "\r\n") * 6000  # ~5 MB
    client = RspamdClient(rspamd.url, reactor_running(), work, timeout=20)
    assert check(client, transaction(spool(tmp_path, message("Big XMAIL-SCORE=3", body=body)))).score \
        == pytest.approx(3)


def test_rspamd_down_is_a_scanner_error(work: Any) -> None:
    client = RspamdClient(f"http://127.0.0.1:{closed_port()}", reactor_running(), work, timeout=5)
    started = time.monotonic()
    with pytest.raises(ScannerError, match="refused"):
        check(client, transaction(message()))
    assert time.monotonic() - started < 2


class Canned(resource.Resource):
    isLeaf = True

    def __init__(self, code: int, body: bytes):
        super().__init__()
        self.code, self.body = code, body

    def render_POST(self, request: Any) -> bytes:
        request.content.read()
        request.setResponseCode(self.code)
        return self.body


def web_server(code: int, body: bytes) -> Any:
    reactor = reactor_running()
    return in_reactor(reactor.listenTCP, 0, server.Site(Canned(code, body)), interface="127.0.0.1")


@pytest.mark.parametrize("code, body, error", [
    (200, b"<html>hello</html>", "not JSON"),
    (500, b'{"error": "internal"}', "HTTP 500"),
    (200, b'{"score": 1', "not JSON"),
    (200, b"{" + b" " * (2 * 1024 * 1024) + b"}", "over"),
])
def test_an_http_server_answering_garbage_is_a_scanner_error(work: Any, code: int, body: bytes,
                                                             error: str) -> None:
    port = web_server(code, body)
    try:
        client = RspamdClient(f"http://127.0.0.1:{port.getHost().port}", reactor_running(), work, timeout=5)
        with pytest.raises(ScannerError, match=error):
            check(client, transaction(message()))
    finally:
        in_reactor(port.stopListening)


@pytest.mark.parametrize("reply, error", [
    # a Content-Length of 500, 20 octets, then the close
    (b"HTTP/1.1 200 OK\r\nContent-Length: 500\r\n\r\n" + b'{"score": 1.0, "req', "cut off"),
    # no length at all: its end cannot be told from a cut
    (b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + json.dumps(GOOD).encode(), "without a length"),
    (b"SMTP 220 hello\r\n", "rspamd at"),
    (b"", "rspamd at"),
])
def test_a_cut_off_reply_is_a_scanner_error(work: Any, reply: bytes, error: str) -> None:
    # Answered once the whole request is in, as rspamd would.
    srv = MisbehavingServer(reply, close=True, until=message()[-12:])
    try:
        client = RspamdClient(f"http://127.0.0.1:{srv.port}", reactor_running(), work, timeout=5)
        with pytest.raises(ScannerError, match=error):
            check(client, transaction(message()))
    finally:
        srv.stop()


def test_a_reply_before_the_request_is_sent_ends_within_the_timeout(work: Any, tmp_path: Any) -> None:
    # Garbage at the first octet of a 2 MB request: a ScannerError, or (a
    # twisted.web race: the request may then never be answered) the
    # client's own timeout -- never a hang.
    srv = MisbehavingServer(b"SMTP 220 hello\r\n", after=1, close=True)
    try:
        client = RspamdClient(f"http://127.0.0.1:{srv.port}", reactor_running(), work, timeout=1)
        big = spool(tmp_path, message("Big", body=("b" * 76 + "\r\n") * 25_000))
        for _ in range(2):
            started = time.monotonic()
            with pytest.raises((ScannerError, defer.TimeoutError)):
                check(client, transaction(big))
            assert time.monotonic() - started < 2
    finally:
        srv.stop()


def test_a_silent_server_is_cut_short_by_cancelling(work: Any) -> None:
    srv = MisbehavingServer(None)
    reactor = reactor_running()
    try:
        client = RspamdClient(f"http://127.0.0.1:{srv.port}", reactor, work)
        started = time.monotonic()
        with pytest.raises(defer.TimeoutError):
            in_reactor(lambda: client.check(transaction(message())).addTimeout(0.5, reactor))
        assert time.monotonic() - started < 1.5
        from tests.support.wait import wait_until

        wait_until(lambda: all(p.transport.disconnected for p in srv.connections), 5,
                   "the scanner's connection to be dropped")
    finally:
        srv.stop()
