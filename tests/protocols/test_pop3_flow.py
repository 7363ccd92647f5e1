# -*- test-case-name: tests.protocols.test_pop3_flow -*-
"""POP3 connection hardening on a StringTransport with an injected clock:
deadlines that activity does not restart (issue 16 #4) and the SIGTERM
drain (issue 14, structure 4)."""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from xmail.config import LimitSettings, ServerSettings, Settings
from xmail.context import ServerContext
from xmail.protocols.pop3.server import POP3Factory
from xmail.protocols.pop3.session import State


def connect(tmp_path: Any, **limits: Any) -> tuple[Any, StringTransport, task.Clock]:
    clock = task.Clock()
    settings = Settings(server=ServerSettings(data_dir=str(tmp_path)),
                        limits=dataclasses.replace(LimitSettings(), **limits))
    factory = POP3Factory(ServerContext(settings=settings, reactor=clock), implicit_tls=False)
    proto = factory.buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    proto.makeConnection(transport)
    transport.clear()
    return proto, transport, clock


def test_login_must_complete_within_login_timeout(tmp_path: Any) -> None:
    proto, transport, clock = connect(tmp_path, login_timeout=30)
    for _ in range(29):
        proto.dataReceived(b"CAPA\r\n")  # busy, never logging in
        clock.advance(1)
    assert not transport.disconnecting
    transport.clear()
    clock.advance(1)
    assert transport.value() == b"-ERR [SYS/TEMP] login took too long\r\n"
    assert transport.disconnecting


def test_a_trickled_command_line_is_cut_off(tmp_path: Any) -> None:
    proto, transport, clock = connect(tmp_path, command_timeout=20, login_timeout=0)
    for byte in b"USER alice@example.com.trickled":  # a byte every 5 s
        proto.dataReceived(bytes([byte]))
        clock.advance(5)
        if transport.disconnecting:
            break
    assert transport.value() == b"-ERR [SYS/TEMP] command took too long to arrive\r\n"
    assert 20 <= clock.seconds() <= 25


def test_no_deadline_between_commands(tmp_path: Any) -> None:
    proto, transport, clock = connect(tmp_path, command_timeout=20, login_timeout=0)
    proto.dataReceived(b"CAPA\r\n")
    clock.advance(500)  # under pop3_idle_timeout (600)
    assert not transport.disconnecting


def test_drain_ends_a_session_between_commands(tmp_path: Any) -> None:
    proto, transport, clock = connect(tmp_path)
    proto.factory.doStop()
    assert transport.value() == b"-ERR [SYS/TEMP] server shutting down\r\n"
    assert transport.disconnecting


def test_drain_lets_the_running_command_finish(tmp_path: Any) -> None:
    proto, transport, clock = connect(tmp_path)
    release: defer.Deferred[None] = defer.Deferred()

    def slow(event: Any) -> Any:
        return release.addCallback(lambda _: proto.write(b"+OK done\r\n"))

    proto.session.handle = slow
    proto.dataReceived(b"STAT\r\n")
    proto.factory.doStop()
    assert transport.value() == b"" and not transport.disconnecting
    release.callback(None)
    assert transport.value() == b"+OK done\r\n-ERR [SYS/TEMP] server shutting down\r\n"
    assert transport.disconnecting
    assert proto.session.state is not State.UPDATE  # nothing deleted


def test_drain_over_tls_does_not_wait_for_the_clients_close_notify(tmp_path: Any) -> None:
    from OpenSSL import SSL

    handle = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)

    class TLSTransport(StringTransport):
        def getHandle(self) -> Any:
            return handle

    settings = Settings(server=ServerSettings(data_dir=str(tmp_path)))
    factory = POP3Factory(ServerContext(settings=settings, reactor=task.Clock()), implicit_tls=True)
    proto = factory.buildProtocol(None)
    transport = TLSTransport(peerAddress=IPv4Address("TCP", "192.0.2.7", 40000))
    proto.makeConnection(transport)
    factory.doStop()
    assert transport.value().endswith(b"-ERR [SYS/TEMP] server shutting down\r\n")
    # Twisted's TLS layer closes TCP once it holds both close_notify alerts:
    # the client's counts as received, so only ours is sent before the close.
    assert handle.get_shutdown() & SSL.RECEIVED_SHUTDOWN
    assert transport.disconnecting
