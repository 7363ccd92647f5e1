"""Connection caps and idle timeouts, through real sockets to a running server."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
import socket
import ssl
import time

import pytest

from tests.conftest import PASSWORD
from xmail.limits import LISTENER_PROTOCOL, REFUSALS, PeerConnections, UserConnections

CAPPED = """
[limits]
max_connections_per_ip = 3
"""


def _connect(port: int, source: str = "127.0.0.1") -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))


def _first_line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    return data


def _closed(sock: socket.socket, within: float = 5.0) -> bool:
    sock.settimeout(within)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


@pytest.mark.parametrize("listener, greeting", [
    ("smtp", b"220 "), ("submission", b"220 "), ("pop3", b"+OK"), ("imap", b"* OK"),
])
def test_per_address_cap_answers_in_the_protocol_and_closes(make_server, listener, greeting):
    server = make_server(CAPPED)
    port = server.port(listener)
    held = [_connect(port) for _ in range(3)]
    try:
        for sock in held:
            assert _first_line(sock).startswith(greeting)
        over = _connect(port)
        line = _first_line(over)
        assert line == REFUSALS[LISTENER_PROTOCOL[listener]]
        assert _closed(over)
        # another client address is not affected
        other = _connect(port, "127.0.0.2")
        assert _first_line(other).startswith(greeting)
        other.close()
        # a closed connection frees its slot
        held.pop().close()
        deadline = time.monotonic() + 5
        while server.ctx.peer_connections.count("127.0.0.1", LISTENER_PROTOCOL[listener]) > 2:
            assert time.monotonic() < deadline
            time.sleep(0.02)
        again = _connect(port)
        assert _first_line(again).startswith(greeting)
        held.append(again)
    finally:
        for sock in held:
            sock.close()


def test_refusal_lines():
    assert REFUSALS["smtp"].startswith(b"421 4.7.0 ") and REFUSALS["pop3"].startswith(b"-ERR [SYS/TEMP] ")
    assert REFUSALS["imap"].startswith(b"* BYE ") and REFUSALS["http"].startswith(b"HTTP/1.1 503 ")
    assert all(line.endswith(b"\r\n") for line in REFUSALS.values())


def test_imap_and_imaps_share_the_cap_and_tls_clients_read_the_refusal(make_server):
    server = make_server(CAPPED)
    held = [_connect(server.port("imap")) for _ in range(3)]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        for sock in held:
            assert _first_line(sock).startswith(b"* OK")
        with context.wrap_socket(_connect(server.port("imaps")), server_hostname="mail.example.com") as tls:
            assert _first_line(tls) == REFUSALS["imap"]
        held.pop().close()
        # The slot is free once the server has counted the close.
        deadline = time.monotonic() + 5
        while server.ctx.peer_connections.count("127.0.0.1", LISTENER_PROTOCOL["imap"]) > 2:
            assert time.monotonic() < deadline, "the closed connection's slot was not released"
            time.sleep(0.02)
        with imaplib.IMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=context, timeout=10) as conn:
            assert conn.noop()[0] == "OK"
    finally:
        for sock in held:
            sock.close()


def test_http_gets_503(make_server):
    server = make_server(CAPPED)
    held = [_connect(server.port("http")) for _ in range(3)]
    try:
        over = _connect(server.port("http"))
        response = b""
        while chunk := over.recv(4096):
            response += chunk
        assert response == REFUSALS["http"]
    finally:
        for sock in held:
            sock.close()


def test_starttls_and_login_still_work_behind_the_cap(server):
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as smtp:
        smtp.starttls(context=ssl._create_unverified_context())
        smtp.login("alice@example.com", PASSWORD)
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    pop.stls(context=ssl._create_unverified_context())
    pop.user("alice@example.com")
    pop.pass_(PASSWORD)
    pop.quit()
    with imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10) as imap:
        imap.starttls(ssl_context=ssl._create_unverified_context())
        imap.login("alice@example.com", PASSWORD)
    deadline = time.monotonic() + 5
    while len(server.ctx.peer_connections):
        assert time.monotonic() < deadline, "connection counts not released"
        time.sleep(0.02)


def test_many_connections_leave_no_counts_behind(make_server):
    server = make_server("[limits]\nmax_connections_per_ip = 20\n")
    port = server.port("pop3")
    for _ in range(5):
        socks = [_connect(port) for _ in range(20)]
        assert all(_first_line(s).startswith(b"+OK") for s in socks)
        for s in socks:
            s.close()
        deadline = time.monotonic() + 5
        while server.ctx.peer_connections.count("127.0.0.1", "pop3"):
            assert time.monotonic() < deadline
            time.sleep(0.02)
    assert len(server.ctx.peer_connections) == 0


def test_zero_switches_the_cap_off(make_server):
    server = make_server("[limits]\nmax_connections_per_ip = 0\n")
    port = server.port("pop3")
    socks = [_connect(port) for _ in range(60)]
    try:
        assert all(_first_line(s).startswith(b"+OK") for s in socks)
    finally:
        for s in socks:
            s.close()


def test_user_connections_counter():
    users = UserConnections(2)
    assert users.acquire("Alice@example.com", "imap") and users.acquire("alice@example.com", "imap")
    assert not users.acquire("alice@example.com", "imap")
    assert users.acquire("alice@example.com", "pop3")  # per protocol
    users.release("alice@example.com", "imap")
    assert users.acquire("alice@example.com", "imap")
    for protocol in ("imap", "imap", "pop3"):
        users.release("alice@example.com", protocol)
    assert len(users) == 0 and users.count("alice@example.com", "imap") == 0
    unlimited = UserConnections(0)
    assert all(unlimited.acquire("a@example.com", "imap") for _ in range(1000))


def test_peer_counter_groups_ipv6_by_64():
    peers = PeerConnections(1)
    assert peers.acquire("2001:db8::1", "imap")
    assert not peers.acquire("2001:db8::2", "imap")
    assert peers.acquire("2001:db8:0:1::1", "imap")


def test_server_context_carries_the_user_counter(server):
    assert isinstance(server.ctx.connections, UserConnections)
    assert server.ctx.connections.limit == server.settings.limits.max_connections_per_user == 20


IDLE = """
[limits]
smtp_idle_timeout = 1
pop3_idle_timeout = 1
imap_idle_timeout = 1
"""


@pytest.mark.parametrize("listener", ["smtp", "submission", "pop3", "imap"])
def test_idle_timeouts_close_silent_connections(make_server, listener):
    server = make_server(IDLE)
    sock = _connect(server.port(listener))
    started = time.monotonic()
    _first_line(sock)
    assert _closed(sock, within=10)
    assert 0.8 <= time.monotonic() - started < 5
