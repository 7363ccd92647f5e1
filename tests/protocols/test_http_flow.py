# -*- test-case-name: tests.protocols.test_http_flow -*-
"""The http listener's connection hardening (issue 16 #3, #4): pipelined
requests from a client that never reads do not pile up answers, a trickled
request is cut off (408), and the server keeps serving others meanwhile."""

from __future__ import annotations

import gc
import socket
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer, task, tcp
from twisted.internet.address import IPv4Address
from twisted.web import http

from tests.autoconfig.conftest import PRODUCTION_TOML
from tests.protocols.flow_support import WriteBoundedTransport
from tests.protocols.test_http_channel import HostedDomains
from tests.protocols.test_smtp_flow import flood
from tests.support.wait import wait_until
from xmail.config import parse
from xmail.context import CoreServices, ServerContext
from xmail.protocols.http.server import HTTPFactory
from xmail.service import http_root

LIMIT = 65536
REQUEST = b"GET /mail/config-v1.1.xml HTTP/1.1\r\nHost: autoconfig.example.com\r\n\r\n"


class FlowClient:
    def __init__(self, tmp_path: Path):
        self.clock = task.Clock()
        settings = parse(PRODUCTION_TOML.replace("[server]\n", f'[server]\ndata_dir = "{tmp_path}"\n'), "t")
        ctx = ServerContext(settings=settings, reactor=self.clock,
                            core=CoreServices(directory=HostedDomains("example.com")))
        factory = HTTPFactory(ctx, implicit_tls=False, root=http_root)
        factory.resource.run_in_thread = lambda f, *a: defer.maybeDeferred(f, *a)
        self.protocol = factory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
        self.transport = WriteBoundedTransport(LIMIT)
        self.protocol.makeConnection(self.transport)


@pytest.fixture
def client(tmp_path: Path) -> FlowClient:
    return FlowClient(tmp_path)


def test_pipelined_requests_from_a_client_that_never_reads(client: FlowClient) -> None:
    count = 3000
    client.protocol.dataReceived(REQUEST * count)
    one_answer = 4096  # a clientconfig answer is ~2 kB
    assert client.transport.peak < LIMIT + one_answer  # not 3000 answers at once
    assert client.transport.producerState == "paused"  # and not reading more
    answered = 0
    for _ in range(count):
        answered += client.transport.take().count(b"HTTP/1.1 200 ")
        if answered == count:
            break
    assert answered == count
    assert client.transport.peak < LIMIT + one_answer
    assert client.transport.producerState == "producing"


def test_a_trickled_request_is_cut_off(client: FlowClient) -> None:
    for byte in REQUEST:  # a byte every 5 s: the 30 s idle timer never fires
        client.protocol.dataReceived(bytes([byte]))
        client.clock.advance(5)
        if client.transport.disconnecting:
            break
    assert client.transport.value().startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert 60 <= client.clock.seconds() <= 65  # [limits] command_timeout = 60


def test_no_deadline_between_requests(client: FlowClient) -> None:
    client.protocol.dataReceived(REQUEST)
    assert b"HTTP/1.1 200 " in client.transport.take()
    client.clock.advance(25)  # under the idle timeout (30 s)
    assert not client.transport.disconnecting


def test_pipelined_flood_without_reading_against_the_server(server: Any) -> None:
    flooder = socket.create_connection(("127.0.0.1", server.port("http")))
    flooder.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    request = b"GET / HTTP/1.1\r\nHost: example.com\r\n\r\n"
    try:
        sent = flood(flooder, request * 10000)
        assert sent > 0
        # The server holds little for this client (old code: tens of MB) ...
        channels = server.call(_open_channels, server.port("http"))
        assert channels and max(channels) < 2 * 1024 * 1024
        # ... and keeps serving others.
        other = socket.create_connection(("127.0.0.1", server.port("http")), timeout=5)
        try:
            started = time.monotonic()
            other.sendall(b"GET / HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n")
            assert other.recv(12) == b"HTTP/1.1 200"
            assert time.monotonic() - started < 2
        finally:
            other.close()
    finally:
        flooder.close()
    # Closed, the flooder's connection and what it held are gone.
    wait_until(lambda: server.call(_open_channels, server.port("http")) == [],
               what="the flooder's channel to be dropped")


def _open_channels(port: int) -> list[int]:
    """Output waiting, plus input not yet parsed (the line buffer and the
    pipelined requests twisted.web holds back), in each open HTTP connection
    to `port` (read on the reactor thread; the Site keeps no list of them)."""
    out = []
    for obj in gc.get_objects():
        if (isinstance(obj, http.HTTPChannel) and isinstance(obj.transport, tcp.Server)
                and obj.transport.connected and obj.transport.getHost().port == port):
            t = obj.transport
            out.append(len(t.dataBuffer) - t.offset + sum(len(d) for d in t._tempDataBuffer)
                       + len(obj._buffer) + sum(len(d) for d in obj._dataBuffer))
    return out
