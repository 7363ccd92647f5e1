# -*- test-case-name: tests.protocols.test_commandloop -*-
"""The shared command loop (xmail.protocols.commandloop) on a StringTransport
with a Clock (Twisted's unit-test standard): timers without sleeping.

Two parts:

- The loop itself, through a small line protocol written here on top of it
  (one command a line; a command may wait on a Deferred the test fires):
  order, read and write back-pressure, the deadlines, the drain, failures,
  the metrics label, and that how the input is cut into reads changes
  nothing.
- POP3 and ManageSieve, the two protocols built on it: the bytes each
  sends for every reason the loop closes a connection (pinned here as
  literals, the bytes they sent before they shared the loop), and their
  metrics labels.  Their logins run through the real xmail.auth.login
  with twisted.cred's portal; a checker the test answers holds a login open.
"""

from __future__ import annotations

import base64
import dataclasses
import enum
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.logger import globalLogPublisher
from zope.interface import implementer

from tests.protocols.test_pop3_session import Client, TLSStringTransport
from xmail import metrics
from xmail.config import Settings
from xmail.context import CoreServices, ServerContext
from xmail.protocols.commandloop import MAX_PENDING_INPUT, CommandLoopProtocol
from xmail.protocols.managesieve.server import ManageSieveFactory, ManageSieveProtocol
from xmail.protocols.pop3.maildrop import InProcessMaildropLocks
from xmail.protocols.pop3.server import POP3Factory, POP3ServerProtocol

COMMAND_TIMEOUT = Settings().limits.command_timeout
LOGIN_TIMEOUT = Settings().limits.login_timeout
ALICE = "alice@example.com"
PASSWORD = "secret pw"


def latency_count(protocol: str, command: str) -> float:
    value = metrics.REGISTRY.get_sample_value(
        "xmail_command_duration_seconds_count", {"protocol": protocol, "command": command})
    return value or 0.0


# -- a small line protocol on the loop ------------------------------------------------
class ToyState(enum.Enum):
    LOGIN = "LOGIN"
    IN = "IN"
    OUT = "OUT"


class NeedData:
    pass


NEED = NeedData()


class Line:
    def __init__(self, word: str):
        self.word = word


class Garbage:
    """A line that names no command (the loop counts it as "BAD")."""


class LineParser:
    """One event a "\\n"-ended line; a line of one "?" is Garbage."""

    def __init__(self) -> None:
        self.buffer = b""
        self.discarded = 0
        self.sasl = False

    @property
    def idle(self) -> bool:
        return not self.buffer

    @property
    def buffered(self) -> int:
        return len(self.buffer)

    def receive_data(self, data: bytes) -> None:
        self.buffer += data

    def next_event(self) -> Any:
        line, found, rest = self.buffer.partition(b"\n")
        if not found:
            return NEED
        self.buffer = rest
        return Garbage() if line == b"?" else Line(line.decode())

    def discard_buffer(self) -> None:
        self.discarded += len(self.buffer)
        self.buffer = b""

    def expect_sasl_response(self) -> None:
        self.sasl = True


class ToySession:
    """LOGIN logs in, WAIT and LOGINWAIT (logs in when it fires) and FAIL
    wait on a Deferred the test fires, STLS starts TLS, QUIT ends; any other
    word is answered at once."""

    def __init__(self, io: ToyProtocol, secure: bool):
        self.io = io
        self.secure = secure
        self.state = ToyState.LOGIN
        self.handled: list[str] = []
        self.waiting: defer.Deferred[None] | None = None

    def greeting(self) -> bytes:
        return b"hello\n"

    def handle(self, event: Any) -> defer.Deferred[None] | None:
        if isinstance(event, Garbage):
            self.io.write(b"bad\n")
            return None
        word = event.word
        self.handled.append(word)
        if word == "LOGIN":
            self.state = ToyState.IN
        elif word == "QUIT":
            self.state = ToyState.OUT
            self.io.write(b"bye\n")
            self.io.close()
            return None
        elif word == "STLS":
            self.io.start_tls()
        elif word in ("WAIT", "LOGINWAIT", "FAIL"):
            d = self.waiting = defer.Deferred()
            d.addCallback(self._finished, word)
            return d
        self.io.write(f"ok {word}\n".encode())
        return None

    def _finished(self, _: Any, word: str) -> None:
        if word == "FAIL":
            raise RuntimeError("the toy's command broke")
        if word == "LOGINWAIT":
            self.state = ToyState.IN
        self.io.write(f"done {word}\n".encode())

    def finish(self) -> None:
        waiting, self.waiting = self.waiting, None
        assert waiting is not None
        waiting.callback(None)

    def connection_lost(self) -> None:
        self.state = ToyState.OUT


class ToyProtocol(CommandLoopProtocol):
    metrics_label = "toy"
    log_label = "Toy"
    event_name = "word"
    need_data = NEED
    login_state = ToyState.LOGIN
    done_states = frozenset({ToyState.OUT})
    IDLE_BYE = b"bye idle\n"
    COMMAND_OVERDUE_BYE = b"bye slow command\n"
    LOGIN_OVERDUE_BYE = b"bye slow login\n"
    SHUTDOWN_BYE = b"bye shutdown\n"
    IDLE = 300

    def __init__(self) -> None:
        super().__init__(LineParser())

    def make_session(self, client_ip: str) -> ToySession:
        return ToySession(self, secure=self.factory.implicit_tls)

    def idle_timeout(self) -> float | None:
        return self.IDLE


class ToyFactory:
    def __init__(self, clock: task.Clock):
        self.ctx = ServerContext(settings=Settings(), reactor=clock, tls=object())
        self.implicit_tls = False
        self.sessions: set[ToyProtocol] = set()


def loopback() -> TLSStringTransport:
    return TLSStringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))


class Toy(Client):
    """A connection of the toy protocol (take, send, closed: POP3's test client)."""

    def __init__(self) -> None:
        self.clock = task.Clock()
        self.factory = ToyFactory(self.clock)
        proto = ToyProtocol()
        proto.factory = self.factory
        transport = loopback()
        proto.makeConnection(transport)
        super().__init__(proto, transport)
        assert self.greeting == b"hello\n"

    @property
    def session(self) -> ToySession:
        return self.proto.session


@pytest.fixture
def toy() -> Toy:
    return Toy()


def test_pipelined_commands_run_one_at_a_time_in_order(toy: Toy):
    assert toy.send(b"A\nWAIT\nB\nC\n") == b"ok A\n"
    assert toy.session.handled == ["A", "WAIT"]  # B waits behind WAIT
    toy.session.finish()
    assert toy.take() == b"done WAIT\nok B\nok C\n"
    assert toy.session.handled == ["A", "WAIT", "B", "C"]


def test_reading_pauses_while_a_command_waits_and_much_is_buffered(toy: Toy):
    toy.send(b"WAIT\n")
    toy.send(b"x" * (MAX_PENDING_INPUT - 2) + b"\n")
    assert toy.transport.producerState == "producing"  # at the bound: still reading
    toy.send(b"y\n")
    assert toy.transport.producerState == "paused"
    toy.session.finish()
    assert toy.transport.producerState == "producing"
    assert toy.session.handled[-2:] == ["x" * (MAX_PENDING_INPUT - 2), "y"]


def test_much_input_is_not_paused_while_commands_are_taken(toy: Toy):
    toy.send(b"A\n" * (MAX_PENDING_INPUT // 2 + 1))
    assert toy.transport.producerState == "producing"
    assert len(toy.session.handled) == MAX_PENDING_INPUT // 2 + 1


def test_no_command_is_taken_while_the_client_does_not_read(toy: Toy):
    toy.send(b"LOGIN\n")
    toy.proto.pauseProducing()  # the transport's write buffer is full
    assert toy.send(b"A\nB\n") == b""
    assert toy.session.handled == ["LOGIN"]
    # The client owes nothing: the command clock does not run meanwhile.
    toy.clock.advance(COMMAND_TIMEOUT + 1)
    assert not toy.closed
    toy.proto.resumeProducing()
    assert toy.take() == b"ok A\nok B\n"


def test_a_trickled_command_meets_the_command_deadline(toy: Toy):
    toy.send(b"LOGIN\n")
    toy.send(b"x")
    for _ in range(COMMAND_TIMEOUT // 10 - 1):
        toy.clock.advance(10)
        assert toy.send(b"x") == b""  # every byte restarts the idle timer ...
    assert not toy.closed
    toy.clock.advance(10)  # ... but not the command's own clock (the bytes
    toy.clock.advance(1)   # received buy a fraction of a second)
    assert toy.take() == b"bye slow command\n"
    assert toy.closed


def test_the_command_clock_stops_with_each_whole_command(toy: Toy):
    toy.send(b"LOGIN\n")
    for _ in range(COMMAND_TIMEOUT // 10 + 2):
        assert toy.send(b"x\n") == b"ok x\n"
        toy.clock.advance(10)
    assert not toy.closed


def test_no_login_within_login_timeout_closes(toy: Toy):
    toy.clock.advance(LOGIN_TIMEOUT - 1)
    assert toy.send(b"A\n") == b"ok A\n"
    toy.clock.advance(1)
    assert toy.take() == b"bye slow login\n"
    assert toy.closed


def test_a_login_ends_the_login_deadline(toy: Toy):
    assert toy.send(b"LOGIN\n") == b"ok LOGIN\n"
    toy.clock.advance(LOGIN_TIMEOUT + 1)
    assert toy.take() == b""
    assert not toy.closed


def test_a_login_being_checked_at_the_login_deadline_is_judged_first(toy: Toy):
    toy.send(b"LOGINWAIT\nA\n")
    toy.clock.advance(LOGIN_TIMEOUT + 1)
    assert toy.take() == b""  # the login is still being checked
    toy.session.finish()  # ... and succeeds: the session goes on
    assert toy.take() == b"done LOGINWAIT\nok A\n"
    assert not toy.closed


def test_a_failed_login_after_the_login_deadline_closes(toy: Toy):
    toy.send(b"WAIT\nA\n")
    toy.clock.advance(LOGIN_TIMEOUT + 1)
    toy.session.finish()  # done, still not logged in
    assert toy.take() == b"done WAIT\nbye slow login\n"
    assert toy.closed
    assert toy.session.handled == ["WAIT"]


def test_shutdown_between_commands_closes_now(toy: Toy):
    toy.send(b"LOGIN\n")
    toy.proto.shutdown()
    assert toy.take() == b"bye shutdown\n"
    assert toy.closed
    assert toy.transport.producer is None  # unregistered: the connection can close


def test_shutdown_during_a_command_closes_once_it_is_done(toy: Toy):
    toy.send(b"LOGIN\nWAIT\nA\n")
    toy.take()
    toy.proto.shutdown()
    assert toy.take() == b""
    assert not toy.closed
    toy.session.finish()
    assert toy.take() == b"done WAIT\nbye shutdown\n"
    assert toy.closed
    assert toy.session.handled == ["LOGIN", "WAIT"]  # A was never run


def test_the_idle_timer_closes_a_silent_connection(toy: Toy):
    toy.send(b"LOGIN\n")
    toy.clock.advance(ToyProtocol.IDLE - 1)
    toy.proto.resumeProducing()  # the client took output: not idle
    toy.clock.advance(ToyProtocol.IDLE - 1)
    assert not toy.closed
    toy.clock.advance(1)
    assert toy.take() == b"bye idle\n"
    assert toy.closed


def test_a_failed_command_is_logged_and_closes(toy: Toy):
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        toy.send(b"LOGIN\nFAIL\nA\n")
        toy.take()
        toy.session.finish()
    finally:
        globalLogPublisher.removeObserver(seen.append)
    assert toy.take() == b""
    assert toy.closed
    assert toy.session.handled == ["LOGIN", "FAIL"]
    failures = [e for e in seen if e.get("log_failure") is not None]
    assert [e["protocol"] for e in failures] == ["Toy"]
    assert failures[0]["log_failure"].check(RuntimeError)


def test_no_command_after_the_session_is_done(toy: Toy):
    assert toy.send(b"QUIT\nA\n") == b"bye\n"
    assert toy.session.handled == ["QUIT"]
    assert toy.closed
    assert toy.send(b"B\n") == b""  # closed: input is ignored
    assert toy.session.handled == ["QUIT"]


def test_lost_connection_forgets_the_session(toy: Toy):
    assert toy.factory.sessions == {toy.proto}
    toy.send(b"WAIT\n")
    toy.proto.connectionLost(None)
    assert toy.factory.sessions == set()
    assert toy.session.state is ToyState.OUT
    toy.clock.advance(max(COMMAND_TIMEOUT, LOGIN_TIMEOUT, ToyProtocol.IDLE) + 1)
    assert toy.clock.getDelayedCalls() == []  # every timer stopped


def test_starttls_drops_what_was_pipelined_in_plaintext(toy: Toy):
    assert toy.send(b"STLS\nLOGIN\n") == b"ok STLS\n"
    assert toy.transport.tls_started
    assert toy.proto.parser.discarded == len(b"LOGIN\n")
    assert toy.session.handled == ["STLS"]


def test_commands_are_counted_under_the_protocols_label(toy: Toy):
    before_a, before_bad = latency_count("toy", "A"), latency_count("toy", "BAD")
    before_wait = latency_count("toy", "WAIT")
    toy.send(b"A\n?\nWAIT\n")
    assert latency_count("toy", "A") == before_a + 1
    assert latency_count("toy", "BAD") == before_bad + 1  # no command name
    assert latency_count("toy", "WAIT") == before_wait  # counted when done
    toy.session.finish()
    assert latency_count("toy", "WAIT") == before_wait + 1


TRANSCRIPT = b"A\nWAIT\nB\n?\nLOGIN\nWAIT\nC\nQUIT\nD\n"


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=1, max_value=len(TRANSCRIPT)), max_size=len(TRANSCRIPT)))
def test_how_the_input_is_cut_into_reads_changes_nothing(cuts: list[int]):
    def run(pieces: list[bytes]) -> tuple[bytes, list[str]]:
        toy = Toy()
        out = b""
        for piece in pieces:
            out += toy.send(piece)
            while toy.session.waiting is not None:
                toy.session.finish()
                out += toy.take()
        return out, toy.session.handled

    points = sorted(set(cuts) | {0, len(TRANSCRIPT)})
    pieces = [TRANSCRIPT[a:b] for a, b in zip(points, points[1:], strict=False)]
    assert run(pieces) == run([TRANSCRIPT])


# -- POP3 and ManageSieve on the loop ------------------------------------------------
class HeldChecker:
    """Answers a login only when the test says so."""

    credentialInterfaces = InMemoryUsernamePasswordDatabaseDontUse.credentialInterfaces

    def __init__(self) -> None:
        self.pending: list[defer.Deferred[Any]] = []

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[Any]:
        d: defer.Deferred[Any] = defer.Deferred()
        self.pending.append(d)
        return d

    def refuse(self) -> None:
        self.pending.pop(0).errback(UnauthorizedLogin())


@implementer(IRealm)
class NoRealm:
    """Every login here is refused: no avatar is ever asked for."""

    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> Any:
        raise AssertionError("no login succeeds in these tests")


class Wire(Client):
    """A real POP3 or ManageSieve protocol from its factory, on a
    StringTransport from the loopback address (plaintext login allowed)."""

    def __init__(self, kind: str, config: Settings | None = None):
        self.clock = task.Clock()
        self.checker = HeldChecker()
        ctx = ServerContext(settings=config or Settings(), reactor=self.clock,
                            core=CoreServices(portal=Portal(NoRealm(), [self.checker])), tls=object())
        if kind == "pop3":
            factory: Any = POP3Factory(ctx, implicit_tls=False)
            factory._locks = InProcessMaildropLocks()
            self.login = b"USER " + ALICE.encode() + b"\r\nPASS " + PASSWORD.encode() + b"\r\n"
            self.command = b"CAPA\r\n"
        else:
            factory = ManageSieveFactory(ctx)
            plain = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
            self.login = b'AUTHENTICATE "PLAIN" "' + plain + b'"\r\n'
            self.command = b"CAPABILITY\r\n"
        transport = loopback()
        proto = factory.buildProtocol(transport.getPeer())
        proto.makeConnection(transport)
        super().__init__(proto, transport)


KINDS = ["pop3", "managesieve"]
# The login deadline off, for the timers that run longer than it.
NO_LOGIN_DEADLINE = dataclasses.replace(
    Settings(), limits=dataclasses.replace(Settings().limits, login_timeout=0))
CLASSES = {"pop3": POP3ServerProtocol, "managesieve": ManageSieveProtocol}
IDLE_SECONDS = {"pop3": Settings().limits.pop3_idle_timeout, "managesieve": 1800}
# The bytes each protocol sent before the loop was shared: they must not change.
BYE = {
    "pop3": {
        "idle": b"-ERR autologout: idle for too long\r\n",
        "command": b"-ERR [SYS/TEMP] command took too long to arrive\r\n",
        "login": b"-ERR [SYS/TEMP] login took too long\r\n",
        "shutdown": b"-ERR [SYS/TEMP] server shutting down\r\n",
    },
    "managesieve": {
        "idle": b'BYE (TRYLATER) "Disconnected for inactivity"\r\n',
        "command": b'BYE (TRYLATER) "Command took too long to arrive"\r\n',
        "login": b'BYE (TRYLATER) "Login took too long"\r\n',
        "shutdown": b'BYE (TRYLATER) "Server shutting down"\r\n',
    },
}


def closes_after(wire: Wire, seconds: int, bye: bytes) -> None:
    """Nothing until `seconds` have passed, then `bye` and the close."""
    wire.clock.advance(seconds - 1)
    assert wire.take() == b""
    assert not wire.closed
    wire.clock.advance(1)
    assert wire.take() == bye
    assert wire.closed


@pytest.mark.parametrize("kind", KINDS)
def test_both_protocols_are_built_on_the_loop(kind: str):
    wire = Wire(kind)
    assert isinstance(wire.proto, CLASSES[kind])
    assert isinstance(wire.proto, CommandLoopProtocol)
    assert wire.proto.factory.sessions == {wire.proto}


@pytest.mark.parametrize("kind", KINDS)
def test_command_deadline_bytes(kind: str):
    wire = Wire(kind, NO_LOGIN_DEADLINE)
    wire.send(wire.command[:2])
    closes_after(wire, COMMAND_TIMEOUT, BYE[kind]["command"])


@pytest.mark.parametrize("kind", KINDS)
def test_idle_bytes_after_the_protocols_idle_timeout(kind: str):
    wire = Wire(kind, NO_LOGIN_DEADLINE)
    wire.clock.advance(IDLE_SECONDS[kind] - 1)
    assert wire.send(wire.command)  # answered: the idle timer starts again
    closes_after(wire, IDLE_SECONDS[kind], BYE[kind]["idle"])


@pytest.mark.parametrize("kind", KINDS)
def test_login_deadline_bytes_now_and_after_a_login_being_checked(kind: str):
    closes_after(Wire(kind), LOGIN_TIMEOUT, BYE[kind]["login"])

    wire = Wire(kind)
    wire.send(wire.login)
    assert len(wire.checker.pending) == 1  # the login is being checked
    wire.clock.advance(LOGIN_TIMEOUT)
    assert wire.take() == b""
    wire.checker.refuse()
    out = wire.take()
    assert out.endswith(BYE[kind]["login"])
    assert out != BYE[kind]["login"]  # the refusal came first
    assert wire.closed


@pytest.mark.parametrize("kind", KINDS)
def test_shutdown_bytes_now_and_after_the_running_command(kind: str):
    wire = Wire(kind)
    wire.proto.shutdown()
    assert wire.take() == BYE[kind]["shutdown"]
    assert wire.closed

    wire = Wire(kind)
    wire.send(wire.login + wire.command)
    wire.proto.shutdown()
    assert wire.take() == b""
    wire.checker.refuse()
    out = wire.take()
    assert out.endswith(BYE[kind]["shutdown"])
    assert out.count(BYE[kind]["shutdown"]) == 1
    assert wire.closed


@pytest.mark.parametrize("kind", KINDS)
def test_the_metrics_label_is_the_protocols(kind: str):
    wire = Wire(kind)
    command = wire.command.strip().decode()
    before = latency_count(kind, command)
    assert wire.send(wire.command)
    assert latency_count(kind, command) == before + 1
