# -*- test-case-name: tests.test_sigterm_drain -*-
"""Issue 14, structure 4: SIGTERM drain against a real `twistd -n xmail`.

A client is in the middle of a command whose answer is larger than the
socket buffers (RETR / FETCH BODY[] of a 12 MB message) and is not reading,
so the server is still streaming it when SIGTERM arrives.  The drain must
let that command finish -- the whole message reaches the client -- and only
then say goodbye (POP3 `-ERR [SYS/TEMP]`, IMAP `* BYE [UNAVAILABLE]`) and
close; twistd exits 0.  POP3 does not enter UPDATE: the message marked
deleted is still there after a restart (RFC 1939 §6).

The bound on the wait (xmail.service.ListenerService.drain) is checked on
an injected clock.
"""

from __future__ import annotations

import signal
import smtplib
import socket
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import task

from tests.support.daemon import Daemon
from xmail import service
from xmail.config import Settings
from xmail.context import ServerContext

ALICE = "alice@example.com"
PASSWORD = "drain password"
LINE = b"0123456789 the quick brown fox jumps over the lazy dog, 0123456789 again\r\n"
BIG = b"Subject: big\r\nFrom: a@example.org\r\n\r\n" + LINE * (12 * 1024 * 1024 // len(LINE))
SMALL = b"Subject: small\r\nFrom: a@example.org\r\n\r\nsmall body\r\n"
NO_THROTTLE = "[limits]\nauth_failures_per_ip = 0\n"


@pytest.fixture
def daemon(tmp_path: Any) -> Iterator[Daemon]:
    daemon = Daemon(tmp_path, listeners=("smtp", "pop3", "imap"))
    daemon.ctl("domain", "add", "example.com")
    daemon.ctl("user", "add", ALICE, "--password-stdin", stdin=PASSWORD + "\n")
    daemon.start()
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=60) as smtp:
        smtp.sendmail("a@example.org", [ALICE], BIG)
        smtp.sendmail("a@example.org", [ALICE], SMALL)
    yield daemon
    if daemon.running():
        daemon.stop()


def _client(port: int) -> socket.socket:
    sock = socket.socket()
    # A small receive window: the 12 MB answer cannot fit in the buffers.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32 * 1024)
    sock.settimeout(60)
    sock.connect(("127.0.0.1", port))
    return sock


def _line(sock: socket.socket, buf: bytearray) -> bytes:
    while b"\r\n" not in buf:
        chunk = sock.recv(65536)
        assert chunk, bytes(buf)
        buf += chunk
    end = buf.index(b"\r\n") + 2
    line = bytes(buf[:end])
    del buf[:end]
    return line


def _until_closed(sock: socket.socket, buf: bytearray) -> bytes:
    while True:
        chunk = sock.recv(1 << 20)
        if not chunk:
            return bytes(buf)
        buf += chunk


def _sigterm_while_streaming(daemon: Daemon) -> None:
    """SIGTERM, then wait until the listeners have stopped (the drain has
    begun: every factory's doStop ran) before the client reads on."""
    mark = len(daemon.lines)
    daemon.send_signal(signal.SIGTERM)
    for listener in ("pop3", "imap"):
        daemon.wait_for(rf"\(TCP Port {daemon.ports[listener]} Closed\)", start=mark)


def _exit_status(daemon: Daemon) -> int:
    """The status twistd exits with after the SIGTERM sent already."""
    assert daemon.proc is not None
    daemon.proc.wait(timeout=60)
    return daemon.stop()  # collects the output; no second signal


def test_pop3_retr_being_streamed_finishes_then_err(daemon: Daemon) -> None:
    sock = _client(daemon.ports["pop3"])
    buf = bytearray()
    assert _line(sock, buf).startswith(b"+OK")
    sock.sendall(f"USER {ALICE}\r\nPASS {PASSWORD}\r\n".encode())
    assert _line(sock, buf).startswith(b"+OK")
    assert _line(sock, buf).startswith(b"+OK maildrop has 2 messages")
    sock.sendall(b"DELE 2\r\n")
    assert _line(sock, buf) == b"+OK message 2 deleted\r\n"
    sock.sendall(b"RETR 1\r\n")
    status = _line(sock, buf)
    assert status.startswith(b"+OK ") and status.endswith(b" octets\r\n")
    size = int(status.split()[1])  # the message as stored: Received: + BIG
    _sigterm_while_streaming(daemon)
    rest = _until_closed(sock, buf)
    # RFC 1939 §3: the whole message (no line starts with ".": no stuffing),
    # its terminator, then the goodbye of the drain.
    goodbye = b".\r\n-ERR [SYS/TEMP] server shutting down\r\n"
    assert len(rest) == size + len(goodbye) and rest.endswith(BIG + goodbye), (len(rest), rest[-200:])
    assert _exit_status(daemon) == 0
    assert not daemon.tracebacks(), daemon.output
    # No UPDATE without QUIT: DELE 2 was forgotten.
    daemon.start()
    pop = _client(daemon.ports["pop3"])
    buf = bytearray()
    _line(pop, buf)
    pop.sendall(f"USER {ALICE}\r\nPASS {PASSWORD}\r\n".encode())
    _line(pop, buf)
    assert _line(pop, buf).startswith(b"+OK maildrop has 2 messages")
    pop.close()


def test_imap_fetch_being_streamed_finishes_then_bye(daemon: Daemon) -> None:
    sock = _client(daemon.ports["imap"])
    buf = bytearray()
    assert _line(sock, buf).startswith(b"* OK")
    sock.sendall(f'a LOGIN {ALICE} "{PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
    while not _line(sock, buf).startswith(b"b OK"):
        pass
    sock.sendall(b"c FETCH 1 BODY.PEEK[]\r\n")
    head = _line(sock, buf)
    assert head.startswith(b"* 1 FETCH (BODY[] {") and head.endswith(b"}\r\n"), head
    size = int(head[head.index(b"{") + 1:-3])  # the message as stored: Received: + BIG
    _sigterm_while_streaming(daemon)
    rest = _until_closed(sock, buf)
    # RFC 3501 §7.1.5: BYE after the tagged reply of the command that ran.
    tail = b")\r\nc OK FETCH completed\r\n* BYE [UNAVAILABLE] server shutting down\r\n"
    assert len(rest) == size + len(tail) and rest.endswith(BIG + tail), (len(rest), rest[-200:])
    assert _exit_status(daemon) == 0
    assert not daemon.tracebacks(), daemon.output


# -- the bound on the wait, on a clock ---------------------------------------------------------

class _Transport:
    disconnecting = False


class _Session:
    def __init__(self) -> None:
        self.transport = _Transport()


class _Factory:
    def __init__(self, count: int) -> None:
        self.sessions = {_Session() for _ in range(count)}


def _drain(count: int) -> tuple[Any, task.Clock, list[Any]]:
    clock = task.Clock()
    factory = _Factory(count)
    listener = service.ListenerService("pop3", ServerContext(settings=Settings(), reactor=clock), (),
                                       factory, False)
    fired: list[Any] = []
    d = listener.drain()
    if d is None:
        fired.append(None)
    else:
        d.addCallback(fired.append)
    return factory, clock, fired


def _run(clock: task.Clock, seconds: float) -> None:
    """Let `seconds` pass a poll at a time, as a reactor would."""
    for _ in range(round(seconds / service.DRAIN_POLL)):
        clock.advance(service.DRAIN_POLL)


def test_drain_ends_when_the_last_session_has_gone() -> None:
    assert _drain(0)[2] == [None]  # nothing to wait for
    factory, clock, fired = _drain(2)
    _run(clock, 10)
    assert fired == []  # both still running a command
    first = factory.sessions.pop()
    first.transport.disconnecting = True
    clock.advance(service.DRAIN_POLL)
    assert fired == []
    factory.sessions.clear()  # connectionLost
    clock.advance(service.DRAIN_POLL)
    assert fired == [None]


def test_drain_gives_up_on_a_command_that_does_not_end() -> None:
    factory, clock, fired = _drain(1)
    _run(clock, service.SESSION_DRAIN_TIMEOUT - 1)
    assert fired == []
    _run(clock, 1 + 2 * service.DRAIN_POLL)
    assert fired == [None]


def test_drain_lingers_briefly_for_sessions_that_said_goodbye() -> None:
    # A TLS peer that never sends close_notify keeps its session in the set.
    factory, clock, fired = _drain(1)
    next(iter(factory.sessions)).transport.disconnecting = True  # seen at the next poll
    _run(clock, service.SESSION_LINGER - service.DRAIN_POLL)
    assert fired == []
    _run(clock, 3 * service.DRAIN_POLL)
    assert fired == [None]
