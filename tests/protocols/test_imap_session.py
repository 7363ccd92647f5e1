"""The IMAP protocol on a StringTransport with an injected clock: timeouts,
flow control and the error paths, without sockets or sleeping."""

from __future__ import annotations

import dataclasses
from typing import Any

from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from xmail.config import LimitSettings, Settings
from xmail.context import ServerContext
from xmail.protocols.imap.server import MAX_PENDING_INPUT, IMAPFactory
from xmail.protocols.imap.session import MAX_BAD_COMMANDS, State


def connect(host: str = "127.0.0.1", **limits: Any) -> tuple[Any, StringTransport, task.Clock]:
    clock = task.Clock()
    settings = Settings(limits=dataclasses.replace(LimitSettings(), **limits))
    ctx = ServerContext(settings=settings, reactor=clock)
    proto = IMAPFactory(ctx, implicit_tls=False, clock=clock).buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
    proto.makeConnection(transport)
    return proto, transport, clock


def exchange(proto: Any, transport: StringTransport, clock: task.Clock, data: bytes) -> bytes:
    transport.clear()
    proto.dataReceived(data)
    for _ in range(20):
        clock.advance(0)
    return transport.value()


def test_greeting_and_capability() -> None:
    proto, transport, clock = connect()
    assert transport.value().startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    out = exchange(proto, transport, clock, b"a CAPABILITY\r\n")
    assert out.startswith(b"* CAPABILITY IMAP4rev1 ") and out.endswith(b"a OK CAPABILITY completed\r\n")
    assert b"AUTH=PLAIN" in out


def test_remote_client_sees_logindisabled() -> None:
    proto, transport, clock = connect("192.0.2.7")
    out = exchange(proto, transport, clock, b"a CAPABILITY\r\n")
    assert b"LOGINDISABLED" in out and b"AUTH=PLAIN" not in out
    out = exchange(proto, transport, clock, b"b LOGIN alice pw\r\n")
    assert out == b"b NO [PRIVACYREQUIRED] use STARTTLS first\r\n"


def test_unauthenticated_connections_time_out_after_two_minutes() -> None:
    proto, transport, clock = connect(login_timeout=0)  # the idle timer alone
    clock.advance(100)
    exchange(proto, transport, clock, b"a NOOP\r\n")  # activity restarts the timer
    clock.advance(119)
    assert not transport.disconnecting
    transport.clear()
    clock.advance(2)
    assert transport.value() == b"* BYE autologout: idle for too long\r\n"
    assert transport.disconnecting


def test_autologout_after_thirty_minutes_of_silence_once_logged_in() -> None:
    proto, transport, clock = connect()
    proto.session.state = State.AUTHENTICATED  # as after LOGIN (acceptance tests log in for real)
    exchange(proto, transport, clock, b"a NOOP\r\n")
    clock.advance(1799)
    assert not transport.disconnecting
    transport.clear()
    clock.advance(2)
    assert transport.value() == b"* BYE autologout: idle for too long\r\n"
    assert transport.disconnecting


def test_autologout_cancelled_on_disconnect() -> None:
    proto, transport, clock = connect()
    proto.connectionLost(None)
    assert clock.getDelayedCalls() == [] or not any(c.active() for c in clock.getDelayedCalls())


def test_literal_continuation_request() -> None:
    proto, transport, clock = connect()
    out = exchange(proto, transport, clock, b"a LOGIN {5}\r\n")
    assert out == b"+ Ready for literal data\r\n"


def test_non_synchronizing_literal_gets_no_continuation() -> None:
    proto, transport, clock = connect("192.0.2.7")
    out = exchange(proto, transport, clock, b"a LOGIN {5+}\r\nalice pw\r\n")
    assert out == b"a NO [PRIVACYREQUIRED] use STARTTLS first\r\n"


def test_bad_commands_keep_the_session_until_the_limit() -> None:
    proto, transport, clock = connect()
    out = exchange(proto, transport, clock, b"a FROB\r\n")
    assert out == b"a BAD unknown command FROB\r\n"
    out = exchange(proto, transport, clock, b"b SELECT INBOX\r\n")
    assert out == b"b BAD SELECT not allowed in the not authenticated state\r\n"
    exchange(proto, transport, clock, b"c NOOP\r\n")  # resets the count
    out = exchange(proto, transport, clock, b"x\r\n" * MAX_BAD_COMMANDS)
    assert out.endswith(b"* BYE too many invalid commands\r\n")
    assert transport.disconnecting


def test_flooding_client_stops_being_read() -> None:
    proto, transport, clock = connect()
    burst = b"a NOOP\r\n" * (MAX_PENDING_INPUT // 8 + 1000)
    proto.dataReceived(burst)
    # One command ran; the rest waits in a bounded buffer and the socket is paused.
    assert transport.producerState == "paused"
    for _ in range(len(burst) // 8 + 10):
        clock.advance(0)
    assert transport.producerState == "producing"
    assert transport.value().count(b"a OK NOOP completed") == len(burst) // 8


def test_output_back_pressure() -> None:
    proto, transport, clock = connect()
    assert proto.drain() is None
    proto.pauseProducing()
    d = proto.drain()
    assert d is not None and not d.called
    proto.resumeProducing()
    assert d.called
    proto.pauseProducing()
    d = proto.drain()
    proto.connectionLost(None)
    failures: list = []
    d.addErrback(failures.append)
    assert failures and failures[0].check(ConnectionError)
    failures.clear()
    proto.drain().addErrback(failures.append)  # a closed connection never drains
    assert failures


def test_no_command_runs_while_the_client_does_not_read() -> None:
    proto, transport, clock = connect()
    proto.pauseProducing()  # the transport's buffer is full
    out = exchange(proto, transport, clock, b"a NOOP\r\nb NOOP\r\n")
    assert out == b""
    proto.resumeProducing()
    for _ in range(5):
        clock.advance(0)
    assert transport.value() == b"a OK NOOP completed\r\nb OK NOOP completed\r\n"


def test_logout() -> None:
    proto, transport, clock = connect()
    out = exchange(proto, transport, clock, b"a LOGOUT\r\n")
    assert out == b"* BYE logging out\r\na OK LOGOUT completed\r\n"
    assert transport.disconnecting


def test_pipelined_input_after_logout_is_ignored() -> None:
    proto, transport, clock = connect()
    out = exchange(proto, transport, clock, b"a LOGOUT\r\nb NOOP\r\n")
    assert b"b OK" not in out


# -- deadlines that activity does not restart (issue 16 #4) ------------------------------------

def test_login_must_complete_within_login_timeout() -> None:
    proto, transport, clock = connect(login_timeout=30)
    for _ in range(29):
        exchange(proto, transport, clock, b"a NOOP\r\n")  # busy, but never logging in
        clock.advance(1)
    assert not transport.disconnecting
    transport.clear()
    clock.advance(1)
    assert transport.value() == b"* BYE login took too long\r\n"
    assert transport.disconnecting


def test_login_deadline_stops_at_login() -> None:
    proto, transport, clock = connect(login_timeout=30)
    proto.session.state = State.AUTHENTICATED  # as after LOGIN (acceptance tests log in for real)
    exchange(proto, transport, clock, b"a NOOP\r\n")
    clock.advance(600)
    assert not transport.disconnecting


def test_a_trickled_command_line_is_cut_off() -> None:
    proto, transport, clock = connect(command_timeout=20)
    proto.session.state = State.AUTHENTICATED
    transport.clear()
    for byte in b"a NOOP xxxxxxxxxxxxxxxxxx":  # one byte every 5 s: the idle timer never fires
        proto.dataReceived(bytes([byte]))
        clock.advance(5)
        if transport.disconnecting:
            break
    assert transport.value() == b"* BYE command took too long to arrive\r\n"
    assert 20 <= clock.seconds() <= 25  # 20 s, plus 1 s per 4 KiB received


def test_a_trickled_literal_is_cut_off_but_a_slow_upload_is_not() -> None:
    proto, transport, clock = connect(command_timeout=20)
    proto.session.state = State.AUTHENTICATED
    exchange(proto, transport, clock, b"a APPEND INBOX {100000}\r\n")
    for _ in range(24):  # 100 kB at 4 kB/s: allowed, 20 s + 1 s per 4 KiB
        proto.dataReceived(b"x" * 4000)
        clock.advance(1)
    assert not transport.disconnecting
    exchange(proto, transport, clock, b"b APPEND INBOX {100000}\r\n")
    for _ in range(30):
        proto.dataReceived(b"x")
        clock.advance(1)
    assert transport.disconnecting
    assert transport.value().endswith(b"* BYE command took too long to arrive\r\n")


def test_command_deadline_does_not_run_between_commands() -> None:
    proto, transport, clock = connect(command_timeout=20)
    proto.session.state = State.AUTHENTICATED
    exchange(proto, transport, clock, b"a NOOP\r\n")
    clock.advance(600)
    assert not transport.disconnecting


# -- SIGTERM drain (issue 14, structure 4) -----------------------------------------------------

def test_drain_says_bye_to_a_session_between_commands() -> None:
    proto, transport, clock = connect()
    transport.clear()
    proto.factory.doStop()
    assert transport.value() == b"* BYE [UNAVAILABLE] server shutting down\r\n"
    assert transport.disconnecting


def test_drain_lets_the_running_command_finish_first() -> None:
    proto, transport, clock = connect()
    proto.session.state = State.AUTHENTICATED
    release: Any = None

    async def slow(request: Any) -> None:
        nonlocal release
        release = defer.Deferred()
        await release
        proto.write(request.tag + b" OK done\r\n")

    proto.session.execute = slow
    exchange(proto, transport, clock, b"a NOOP\r\n")
    assert release is not None
    proto.factory.doStop()
    assert transport.value() == b"" and not transport.disconnecting
    release.callback(None)
    assert transport.value() == b"a OK done\r\n* BYE [UNAVAILABLE] server shutting down\r\n"
    assert transport.disconnecting
