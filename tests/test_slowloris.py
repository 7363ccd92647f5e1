# -*- test-case-name: tests.test_slowloris -*-
"""Issue 16 #4 against the running server, with small configured deadlines:
a client trickling one byte at a time is cut off on every listener, and a
client that never logs in is cut off on IMAP, POP3 and submission however
busy it keeps the connection.  Issue 14: SIGTERM drain says goodbye on IMAP and POP3."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

TOML = "[limits]\ncommand_timeout = 1\nlogin_timeout = 2\n"
REQUESTS = {
    "imap": b"a1 NOOP trickled slowly, one byte at a time\r\n",
    "pop3": b"USER alice@example.com.trickled.slowly\r\n",
    "smtp": b"EHLO trickled.slowly.example.com\r\n",
    "http": b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n",
}
CUT_OFF = {"imap": b"* BYE command took too long", "pop3": b"-ERR [SYS/TEMP] command took too long",
           "smtp": b"421 4.4.2 ", "http": b"HTTP/1.1 408 "}


@pytest.fixture
def slow_server(make_server: Any) -> Any:
    server = make_server(TOML)
    server.add_domain("example.com")
    return server


def _read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except (ConnectionError, TimeoutError):
            return data
        if not chunk:
            return data
        data += chunk


@pytest.mark.parametrize("listener", sorted(REQUESTS))
def test_trickling_client_is_cut_off(slow_server: Any, listener: str) -> None:
    sock = socket.create_connection(("127.0.0.1", slow_server.port(listener)), timeout=10)
    try:
        if listener != "http":
            sock.recv(4096)  # the greeting
        started = time.monotonic()
        closed = False
        for byte in REQUESTS[listener][:-2]:  # never the line end
            try:
                sock.sendall(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            time.sleep(0.2)  # each byte well inside the idle timers
            if time.monotonic() - started > 1.5:
                break
        rest = _read_until_closed(sock)
        elapsed = time.monotonic() - started
        assert closed or CUT_OFF[listener] in rest, rest
        assert elapsed < 8
    finally:
        sock.close()


@pytest.mark.parametrize("listener,command,cut", [
    ("imap", b"a NOOP\r\n", b"* BYE login took too long"),
    ("pop3", b"CAPA\r\n", b"-ERR [SYS/TEMP] login took too long"),
    ("submission", b"NOOP\r\n", b"Authentication took too long"),
])
def test_busy_client_that_never_logs_in_is_cut_off(slow_server: Any, listener: str, command: bytes,
                                                   cut: bytes) -> None:
    sock = socket.create_connection(("127.0.0.1", slow_server.port(listener)), timeout=10)
    try:
        sock.recv(4096)
        started = time.monotonic()
        seen = b""
        while cut not in seen and time.monotonic() - started < 8:
            try:
                sock.sendall(command)  # active all the time: the idle timer never fires
                seen += sock.recv(65536)
            except (ConnectionError, TimeoutError):
                break
            time.sleep(0.1)
        assert cut in seen
        assert 1.5 < time.monotonic() - started < 8  # login_timeout = 2
    finally:
        sock.close()


def test_sigterm_drain_says_goodbye(server: Any) -> None:
    imap = socket.create_connection(("127.0.0.1", server.port("imap")), timeout=10)
    pop3 = socket.create_connection(("127.0.0.1", server.port("pop3")), timeout=10)
    try:
        imap.recv(4096)
        pop3.recv(4096)
        server.stop()  # what SIGTERM does: the listeners stop, sessions drain
        assert b"* BYE [UNAVAILABLE] server shutting down\r\n" in _read_until_closed(imap)
        assert b"-ERR [SYS/TEMP] server shutting down\r\n" in _read_until_closed(pop3)
    finally:
        imap.close()
        pop3.close()
