# -*- test-case-name: tests.protocols.test_smtp_flow -*-
"""SMTP connection hardening (issue 16 #3, #4): replies are produced with
back-pressure (a client that never reads cannot make the server buffer), and
deadlines that activity does not restart cut off trickling clients.  Unit
tests on a transport with a producer and an injected task.Clock; one
acceptance test per item against the running server."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest
from twisted.internet import task
from twisted.internet.address import IPv4Address

from tests.protocols.flow_support import WriteBoundedTransport
from tests.protocols.test_smtp_session import FakeBackend
from tests.protocols.test_smtp_wire import Wire
from tests.support.wait import wait_until
from xmail.config import Settings
from xmail.context import ServerContext
from xmail.protocols.smtp.server import PAUSE_BUFFERED, SMTPFactory

LIMIT = 65536


class FlowClient:
    def __init__(self, tmp_path: Any, mode: str = "mx"):
        self.clock = task.Clock()
        ctx = ServerContext(settings=Settings(), reactor=self.clock)
        self.factory = SMTPFactory(ctx, implicit_tls=False, mode=mode)
        self.factory.agent = FakeBackend(str(tmp_path), self.clock)
        self.transport = WriteBoundedTransport(LIMIT, peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
        self.protocol = self.factory.buildProtocol(None)
        self.protocol.callLater = self.clock.callLater
        self.protocol.makeConnection(self.transport)
        self.transport.take()  # the greeting


@pytest.fixture
def client(tmp_path: Any) -> FlowClient:
    return FlowClient(tmp_path)


def test_ehlo_loop_from_a_client_that_never_reads(client: FlowClient) -> None:
    burst = b"EHLO client.example\r\n" * 20000  # 420 kB in, ~5 MB of replies
    client.protocol.dataReceived(burst)
    # The replies waiting stay within the transport's bound plus one reply...
    assert client.transport.peak < LIMIT + 1024
    # ... and reading stopped once PAUSE_BUFFERED of input waited.
    assert client.transport.producerState == "paused"
    assert client.protocol.session.parser.buffered > PAUSE_BUFFERED
    answered = 0
    for _ in range(10000):
        out = client.transport.take()  # the client reads at last
        answered += out.count(b"250 ")
        if answered == 20000:
            break
    assert answered == 20000
    assert client.transport.producerState == "producing"
    assert client.transport.peak < LIMIT + 1024


def test_a_trickled_command_is_cut_off(client: FlowClient) -> None:
    for byte in b"EHLO client.example.com.trickling.slowly":  # a byte every 5 s
        client.protocol.dataReceived(bytes([byte]))
        client.clock.advance(5)
        if client.transport.disconnecting:
            break
    assert client.transport.value().startswith(b"421 4.4.2 ")
    assert client.transport.disconnecting
    assert 60 <= client.clock.seconds() <= 65  # [limits] command_timeout = 60


def test_a_trickled_message_body_is_cut_off(client: FlowClient) -> None:
    client.protocol.dataReceived(b"EHLO c\r\nMAIL FROM:<a@b.example>\r\n"
                                 b"RCPT TO:<alice@example.com>\r\nDATA\r\n")
    client.clock.advance(0)
    assert b"354 " in client.transport.take()
    for _ in range(100):
        client.protocol.dataReceived(b"x")
        client.clock.advance(5)
        if client.transport.disconnecting:
            break
    assert client.transport.value().startswith(b"421 4.4.2 ")
    assert client.clock.seconds() <= 70


def test_no_deadline_between_commands(client: FlowClient) -> None:
    client.protocol.dataReceived(b"EHLO c\r\n")
    client.clock.advance(250)  # under smtp_idle_timeout (300)
    assert not client.transport.disconnecting


def test_submission_login_deadline(tmp_path: Any) -> None:
    client = FlowClient(tmp_path, mode="submission")
    for _ in range(59):  # busy, never authenticating
        client.protocol.dataReceived(b"NOOP\r\n")
        client.clock.advance(1)
    assert not client.transport.disconnecting
    client.transport.take()
    client.clock.advance(1)
    assert client.transport.value().startswith(b"421 4.7.0 ")
    assert client.transport.disconnecting


# -- against the running server ----------------------------------------------------------------

def _pending_output(server: Any) -> list[tuple[int, int]]:
    """(output waiting to be sent, input waiting to be parsed) of each open
    SMTP connection, read on the reactor thread."""
    factory = server.service.listeners["smtp"].factory
    factory = getattr(factory, "wrapped", factory)

    def sizes() -> list[tuple[int, int]]:
        out = []
        for proto in factory.sessions:
            t = proto.transport
            waiting = len(t.dataBuffer) - t.offset + sum(len(d) for d in t._tempDataBuffer)
            out.append((waiting, proto.session.parser.buffered))
        return out

    return server.call(sizes)


def flood(sock: socket.socket, burst: bytes, seconds: float = 4.0) -> int:
    """Send burst over and over for `seconds`, never reading; the bytes sent."""
    sock.setblocking(False)
    sent = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sent += sock.send(burst[sent % len(burst):])
        except BlockingIOError:
            time.sleep(0.01)
    return sent


def test_ehlo_flood_without_reading_stays_bounded(server: Any) -> None:
    flooder = socket.create_connection(("127.0.0.1", server.port("smtp")))
    flooder.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    burst = b"EHLO flood.example\r\n" * 50000
    try:
        sent = flood(flooder, burst)
        # The server stopped reading: what it holds for this client (replies
        # not yet sent, input not yet parsed) is bounded, whatever the kernel
        # buffers of loopback (several MB) took of the `sent` bytes.
        assert sent > 0
        pending, buffered = zip(*_pending_output(server), strict=True)
        assert max(pending) < 1024 * 1024 and max(buffered) < 1024 * 1024
        # and it keeps serving everyone else
        other = Wire(server.port("smtp"))
        try:
            started = time.monotonic()
            assert other.cmd("EHLO other.example").startswith("250")
            assert time.monotonic() - started < 2
        finally:
            other.close()
    finally:
        flooder.close()
    # Closed, the flooder leaves nothing behind (the server kept its
    # 507 MB after the close): its session and buffers are gone.
    wait_until(lambda: _pending_output(server) == [], what="the flooder's session to be dropped")
