"""clamd's zINSTREAM client: the reply parser without I/O, then the real
clamd of the session (tests/support/scanners.py) and servers that
misbehave on a real loopback socket."""

from __future__ import annotations

import time
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.filter.scanners.support import MisbehavingServer, closed_port, eicar_message, message, spool
from tests.support.scanners import EICAR, EICAR_NAME
from tests.support.server import in_reactor, reactor_running
from xmail.filter.scanners import ScannerError, ScannerLimitError
from xmail.filter.scanners.clamd import (
    MAX_REPLY,
    ClamdClient,
    ClamdReplyParser,
    ClamdResult,
    clamd_endpoint,
    parse_reply,
)
from xmail.filter.scanners.stream import opener_for


def feed(data: bytes, bytewise: bool) -> bytes | None:
    parser = ClamdReplyParser()
    pieces = [data[i:i + 1] for i in range(len(data))] if bytewise else [data]
    reply = None
    for piece in pieces:
        reply = parser.feed(piece)
    return reply


@pytest.mark.parametrize("bytewise", [False, True])
def test_a_reply_ends_at_its_nul_whole_or_byte_by_byte(bytewise: bool) -> None:
    assert feed(b"stream: OK\0", bytewise) == b"stream: OK"
    assert feed(b"stream: Eicar-Signature FOUND\0trailing", bytewise) == b"stream: Eicar-Signature FOUND"
    assert feed(b"stream: O", bytewise) is None


@pytest.mark.parametrize("bytewise", [False, True])
def test_a_reply_without_its_end_is_bounded(bytewise: bool) -> None:
    with pytest.raises(ScannerError, match="longer than"):
        feed(b"A" * (MAX_REPLY + 1), bytewise)


def test_replies_are_classified() -> None:
    assert parse_reply(b"stream: OK") == ClamdResult(None)
    assert parse_reply(b"stream: Eicar-Signature FOUND").virus == "Eicar-Signature"
    assert parse_reply(b"stream: Win.Test(abc:68) FOUND").virus == "Win.Test(abc:68)"
    with pytest.raises(ScannerLimitError):
        parse_reply(b"INSTREAM size limit exceeded. ERROR")
    with pytest.raises(ScannerError, match="clamd error"):
        parse_reply(b"Can't allocate memory ERROR")
    for garbage in (b"", b"HTTP/1.1 200 OK", b"stream: FOUND", b"stream: \x00\x01 FOUND", b"PONG"):
        with pytest.raises(ScannerError):
            parse_reply(garbage)


@given(st.binary(max_size=3000))
def test_any_input_parses_or_raises_scanner_error(data: bytes) -> None:
    parser = ClamdReplyParser()
    try:
        reply = parser.feed(data)
        if reply is not None:
            parse_reply(reply)
    except ScannerError:
        pass


def test_addresses() -> None:
    reactor = reactor_running()
    assert clamd_endpoint(reactor, "unix:/run/clamav/clamd.ctl")._path == "/run/clamav/clamd.ctl"
    assert clamd_endpoint(reactor, "tcp:127.0.0.1:3310")._port == 3310
    assert clamd_endpoint(reactor, "tcp:[::1]:3310")._host == "::1"
    for bad in ("", "clamd", "tcp:3310", "http://x"):
        with pytest.raises(ValueError):
            clamd_endpoint(reactor, bad)


def scan(client: ClamdClient, source: bytes | str) -> Any:
    return in_reactor(client.scan, opener_for(source))


def test_clean_and_infected_over_tcp_and_unix(clamd: Any, work: Any, tmp_path: Any) -> None:
    reactor = reactor_running()
    for address in (clamd.tcp, clamd.unix):
        client = ClamdClient(address, reactor, work, timeout=10)
        assert scan(client, message()).clean
        assert scan(client, spool(tmp_path, eicar_message())).virus == EICAR_NAME + ".UNOFFICIAL"
        assert scan(client, EICAR).virus == EICAR_NAME + ".UNOFFICIAL"


def test_a_big_message_streams_in_small_chunks(clamd: Any, work: Any, tmp_path: Any) -> None:
    # Just under clamd's StreamMaxLength, in 4 kB chunks: > 200 of them,
    # each read on the pool; the infected part at the very end is found.
    filler = ("Lorem ipsum dolor sit amet " * 30 + "\r\n") * 1200
    data = message("Big", body=filler, attachment=EICAR)
    assert 900_000 < len(data) < clamd.stream_max_length
    client = ClamdClient(clamd.tcp, reactor_running(), work, chunk_size=4096)
    assert scan(client, spool(tmp_path, data)).virus == EICAR_NAME + ".UNOFFICIAL"


def test_a_message_over_stream_max_length_is_a_limit_error(clamd: Any, work: Any,
                                                           tmp_path: Any) -> None:
    over = b"y" * (clamd.stream_max_length + 100_000)
    path = spool(tmp_path, message("Huge", body="x" * 76 + "\r\n") + over)
    client = ClamdClient(clamd.tcp, reactor_running(), work)
    with pytest.raises(ScannerLimitError):
        scan(client, path)


def test_clamd_down_is_a_scanner_error(work: Any, tmp_path: Any) -> None:
    reactor = reactor_running()
    for address in (f"tcp:127.0.0.1:{closed_port()}", f"unix:{tmp_path}/nothing.sock"):
        started = time.monotonic()
        with pytest.raises(ScannerError, match="clamd at"):
            scan(ClamdClient(address, reactor, work, timeout=5), message())
        assert time.monotonic() - started < 2


@pytest.mark.parametrize("reply, close, error", [
    (b"HTTP/1.1 400 Bad Request\r\n\r\n", True, "cut off"),
    (b"stream: Nonsense here\0", True, "unexpected clamd reply"),
    (b"stream: O", True, "cut off"),
    (b"", True, "without a reply"),
    (b"Z" * 5000, False, "longer than"),
])
def test_a_server_answering_garbage_is_a_scanner_error(work: Any, reply: bytes, close: bool,
                                                       error: str) -> None:
    server = MisbehavingServer(reply, after=1, close=close)
    try:
        client = ClamdClient(f"tcp:127.0.0.1:{server.port}", reactor_running(), work, timeout=5)
        with pytest.raises(ScannerError, match=error):
            scan(client, message())
    finally:
        server.stop()


def test_a_silent_server_is_cut_short_by_cancelling(work: Any) -> None:
    # The pipeline's timeout cancels the scan: the connection is dropped.
    server = MisbehavingServer(None)
    reactor = reactor_running()
    try:
        client = ClamdClient(f"tcp:127.0.0.1:{server.port}", reactor, work)
        started = time.monotonic()

        def scan_with_timeout() -> Any:
            return client.scan(opener_for(message())).addTimeout(0.5, reactor)

        from twisted.internet.defer import TimeoutError

        with pytest.raises(TimeoutError):
            in_reactor(scan_with_timeout)
        assert time.monotonic() - started < 1.5
        from tests.support.wait import wait_until

        wait_until(lambda: all(p.transport.disconnected for p in server.connections), 5,
                   "the scanner's connection to be dropped")
    finally:
        server.stop()
