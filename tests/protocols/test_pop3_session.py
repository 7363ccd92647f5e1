# -*- test-case-name: tests.protocols.test_pop3_session -*-
"""The POP3 protocol and state machine on a StringTransport with a Clock.

Unit tests: the store is the shipped in-memory one (xmail.store.memory),
the realm a small stand-in obeying IMailAccount; the acceptance tests against the real
server are in test_pop3_server.py.
"""

from __future__ import annotations

import base64
import dataclasses
import inspect
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import globalLogPublisher
from zope.interface import implementer

from xmail.auth.interfaces import IMailAccount
from xmail.config import Settings, parse
from xmail.context import CoreServices, ServerContext
from xmail.protocols.pop3.maildrop import InProcessMaildropLocks
from xmail.protocols.pop3.server import POP3Factory
from xmail.protocols.pop3.session import UserError
from xmail.protocols.skeleton import BadSyntax
from xmail.store.interfaces import IMailbox
from xmail.store.memory import MemoryFolder, MemoryMailbox

PASSWORD = "secret pw"
MESSAGES = [
    b"From: a@example.com\r\nSubject: one\r\n\r\n.first line\r\nsecond\r\n",
    b"From: b@example.com\r\nSubject: two\r\n\r\nbody\r\n",
    b"From: c@example.com\r\nSubject: three\r\n\r\nx\r\ny\r\nz\r\n",
]


class RecordingFolder(MemoryFolder):
    """The shipped in-memory INBOX (xmail.store.memory), recording the
    expunge calls a session makes."""

    def __init__(self, messages: list[bytes]):
        super().__init__("INBOX", uidvalidity=777)
        for data in messages:
            self.add(data, internaldate=0.0)
        self.expunged: list[list[int]] = []

    def expunge(self, uids: Any) -> defer.Deferred:
        uids = list(uids)
        self.expunged.append(uids)
        return super().expunge(uids)


@implementer(IMailAccount)
@dataclass
class Account:
    address: str
    mailbox: IMailbox
    record: Any = None


@implementer(IRealm)
@dataclass
class MemoryRealm:
    mailboxes: dict[str, IMailbox]
    logouts: list[str] = field(default_factory=list)

    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> Any:
        address = avatar_id.decode() if isinstance(avatar_id, bytes) else avatar_id
        return IMailAccount, Account(address, self.mailboxes[address]), lambda: self.logouts.append(address)


class AuditRecorder:
    def __init__(self) -> None:
        self.events: list[tuple] = []
        self.mail_events: list[tuple] = []

    def login(self, *args: Any) -> None:
        self.events.append(("login", *args))

    def logout(self, *args: Any) -> None:
        self.events.append(("logout", *args))

    def mail(self, event: str, **fields: Any) -> None:
        self.mail_events.append((event, fields))


class TLSStringTransport(StringTransport):
    tls_started = False

    def startTLS(self, contextFactory: Any) -> None:
        self.tls_started = True


class World:
    """One server context, shared by the connections of a test."""

    def __init__(self, settings: Settings | None = None, tls: bool = True):
        self.clock = task.Clock()
        self.inbox = RecordingFolder(list(MESSAGES))
        checker = InMemoryUsernamePasswordDatabaseDontUse(**{"alice@example.com": PASSWORD.encode()})
        mailbox = MemoryMailbox("alice@example.com", special={})
        mailbox.adopt(self.inbox)
        self.realm = MemoryRealm({"alice@example.com": mailbox})
        self.audit = AuditRecorder()
        self.ctx = ServerContext(settings=settings or Settings(), reactor=self.clock,
                                 core=CoreServices(portal=Portal(self.realm, [checker]), audit=self.audit),
                                 tls=object() if tls else None)
        self.factory = POP3Factory(self.ctx, implicit_tls=False)
        self.factory._locks = InProcessMaildropLocks()

    def connect(self, host: str = "127.0.0.1") -> Client:
        transport = TLSStringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        proto = self.factory.buildProtocol(transport.getPeer())
        proto.makeConnection(transport)
        return Client(proto, transport)


class Client:
    def __init__(self, proto: Any, transport: TLSStringTransport):
        self.proto = proto
        self.transport = transport
        self.greeting = self.take()

    def take(self) -> bytes:
        data = self.transport.value()
        self.transport.clear()
        return data

    def send(self, data: bytes) -> bytes:
        self.proto.dataReceived(data)
        return self.take()

    def cmd(self, line: str) -> bytes:
        return self.send(line.encode() + b"\r\n")

    def login(self) -> bytes:
        assert self.cmd("USER alice@example.com") == b"+OK send PASS\r\n"
        return self.cmd(f"PASS {PASSWORD}")

    @property
    def closed(self) -> bool:
        return self.transport.disconnecting


@pytest.fixture
def world() -> World:
    return World()


def test_greeting_and_capa_on_loopback(world: World):
    client = world.connect()
    assert client.greeting == b"+OK localhost xmail POP3 server ready\r\n"
    assert client.cmd("CAPA") == (
        b"+OK Capability list follows\r\nTOP\r\nUIDL\r\nUSER\r\nSASL PLAIN LOGIN\r\nRESP-CODES\r\n"
        b"AUTH-RESP-CODE\r\nPIPELINING\r\nSTLS\r\nEXPIRE NEVER\r\nLOGIN-DELAY 0\r\n"
        b"IMPLEMENTATION xmail\r\n.\r\n")


def test_user_pass_and_every_transaction_command(world: World):
    client = world.connect()
    assert client.login() == b"+OK maildrop has 3 messages (%d octets)\r\n" % sum(map(len, MESSAGES))
    sizes = [len(m) for m in MESSAGES]
    assert client.cmd("STAT") == b"+OK 3 %d\r\n" % sum(sizes)
    assert client.cmd("LIST") == (b"+OK 3 messages (%d octets)\r\n1 %d\r\n2 %d\r\n3 %d\r\n.\r\n"
                                  % (sum(sizes), *sizes))
    assert client.cmd("LIST 2") == b"+OK 2 %d\r\n" % sizes[1]
    assert client.cmd("UIDL") == b"+OK unique-id listing follows\r\n1 777.1\r\n2 777.2\r\n3 777.3\r\n.\r\n"
    assert client.cmd("UIDL 3") == b"+OK 3 777.3\r\n"
    assert client.cmd("RETR 1") == (b"+OK %d octets\r\n" % sizes[0]
                                    + MESSAGES[0].replace(b"\r\n.first", b"\r\n..first") + b".\r\n")
    assert client.cmd("TOP 3 1") == (b"+OK top of message follows\r\n"
                                     b"From: c@example.com\r\nSubject: three\r\n\r\nx\r\n.\r\n")
    assert client.cmd("NOOP") == b"+OK\r\n"
    assert client.cmd("DELE 2") == b"+OK message 2 deleted\r\n"
    assert client.cmd("DELE 2") == b"-ERR message 2 already deleted\r\n"
    assert client.cmd("RETR 2") == b"-ERR message 2 already deleted\r\n"
    assert client.cmd("STAT") == b"+OK 2 %d\r\n" % (sizes[0] + sizes[2])
    assert client.cmd("LIST") == (b"+OK 2 messages (%d octets)\r\n1 %d\r\n3 %d\r\n.\r\n"
                                  % (sizes[0] + sizes[2], sizes[0], sizes[2]))
    assert client.cmd("RSET") == b"+OK maildrop has 3 messages (%d octets)\r\n" % sum(sizes)
    assert client.cmd("DELE 3") == b"+OK message 3 deleted\r\n"
    assert world.inbox.expunged == []
    assert client.cmd("QUIT") == b"+OK localhost POP3 server signing off (1 messages deleted)\r\n"
    assert world.inbox.expunged == [[3]]
    assert client.closed
    assert world.factory.locks.held() == frozenset()
    assert world.realm.logouts == ["alice@example.com"]
    assert [e[0] for e in world.audit.events] == ["login", "logout"]
    assert world.audit.events[0] == ("login", "alice@example.com", "pop3", "127.0.0.1", "USER", "ok")


def test_bad_message_numbers(world: World):
    client = world.connect()
    client.login()
    assert client.cmd("RETR 0") == b"-ERR no such message\r\n"
    assert client.cmd("RETR 4") == b"-ERR no such message\r\n"
    assert client.cmd("RETR x") == b"-ERR invalid message number\r\n"
    assert client.cmd("RETR -1") == b"-ERR invalid message number\r\n"
    assert client.cmd("TOP 1 -1") == b"-ERR invalid number of lines\r\n"
    assert client.cmd("RETR") == b"-ERR wrong number of arguments for RETR\r\n"
    assert client.cmd("USER bob") == b"-ERR USER not valid in the TRANSACTION state\r\n"
    assert client.cmd("XYZZY") == b"-ERR unknown command\r\n"
    assert client.cmd("STAT").startswith(b"+OK 3 ")


def test_transaction_commands_refused_before_login(world: World):
    client = world.connect()
    assert client.cmd("STAT") == b"-ERR STAT not valid in the AUTHORIZATION state\r\n"
    assert client.cmd("PASS x") == b"-ERR send USER first\r\n"
    assert client.cmd("QUIT") == b"+OK bye\r\n"
    assert client.closed


def test_wrong_password_then_closed_after_three(world: World):
    client = world.connect()
    for _attempt in range(3):
        client.cmd("USER alice@example.com")
        reply = client.cmd("PASS wrong")
        assert reply.startswith(b"-ERR [AUTH] authentication failed\r\n")
    assert reply.endswith(b"-ERR too many authentication failures, closing\r\n")
    assert client.closed
    assert world.audit.events[0][-1] == "fail"


def test_second_session_gets_in_use_and_drop_deletes_nothing(world: World):
    first = world.connect()
    first.login()
    assert first.cmd("DELE 1") == b"+OK message 1 deleted\r\n"
    second = world.connect()
    assert second.login() == b"-ERR [IN-USE] maildrop is locked by another POP3 session\r\n"
    assert not second.closed
    first.proto.connectionLost(None)  # dropped without QUIT
    assert world.inbox.expunged == []
    assert second.login().startswith(b"+OK maildrop has 3 messages")


def test_message_expunged_elsewhere_is_an_error_not_a_broken_session(world: World):
    client = world.connect()
    client.login()
    world.inbox.discard([2])  # another session took it
    assert client.cmd("RETR 2") == b"-ERR message 2 was removed by another session\r\n"
    assert client.cmd("RETR 3").startswith(b"+OK")
    assert client.cmd("DELE 2") == b"+OK message 2 deleted\r\n"
    assert client.cmd("QUIT").startswith(b"+OK")
    assert world.inbox.expunged == [[2]]


def test_plaintext_auth_refused_from_non_loopback_until_tls(world: World):
    client = world.connect("127.0.0.2")
    capa = client.cmd("CAPA")
    assert b"USER" not in capa and b"SASL" not in capa and b"STLS\r\n" in capa
    assert client.cmd("USER alice@example.com") == (
        b"-ERR [AUTH] plaintext authentication disallowed on an unencrypted connection, use STLS\r\n")
    assert client.cmd("AUTH PLAIN").startswith(b"-ERR [AUTH] plaintext")
    assert client.cmd("STLS") == b"+OK Begin TLS negotiation now\r\n"
    assert client.transport.tls_started
    capa = client.cmd("CAPA")
    assert b"USER\r\n" in capa and b"STLS" not in capa
    assert client.cmd("STLS") == b"-ERR TLS already active\r\n"
    assert client.login().startswith(b"+OK maildrop has 3")


def test_every_password_command_is_gated_on_tls_or_the_loopback_exemption(world: World):
    from xmail.protocols.pop3.session import COMMANDS

    # One rule in the table (skeleton needs_tls), not a check per handler.
    assert {name for name, c in COMMANDS.items() if c.needs_tls} == {"USER", "PASS", "AUTH"}
    client = world.connect("127.0.0.2")
    refused = b"-ERR [AUTH] plaintext authentication disallowed on an unencrypted connection, use STLS\r\n"
    # Before TLS not even the mechanism list (CAPA shows no SASL either),
    # and the TLS rule comes before the arity check.
    for line in ("PASS secret", "AUTH", "AUTH CRAM-MD5", "AUTH PLAIN =", "USER", "USER a b") * 2:
        assert client.cmd(line) == refused, line
    assert not client.closed  # a refusal, not a bad command (MAX_BAD_COMMANDS is 10)
    assert world.audit.events == []
    client.cmd("STLS")
    assert client.cmd("AUTH") == b"+OK SASL mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n"
    assert client.cmd("USER") == b"-ERR wrong number of arguments for USER\r\n"


def test_loopback_exemption_can_be_switched_off():
    world = World(parse("[server]\nloopback_plaintext_auth = false\n"))
    client = world.connect("127.0.0.1")
    assert client.cmd("USER alice@example.com").startswith(b"-ERR [AUTH] plaintext")


def test_stls_discards_pipelined_plaintext(world: World):
    client = world.connect("127.0.0.2")
    reply = client.send(b"STLS\r\nUSER alice@example.com\r\nPASS secret pw\r\n")
    assert reply == b"+OK Begin TLS negotiation now\r\n"
    assert client.cmd("NOOP") == b"-ERR NOOP not valid in the AUTHORIZATION state\r\n"


def test_stls_unavailable_without_certificate():
    world = World(tls=False)
    client = world.connect()
    assert b"STLS" not in client.cmd("CAPA")
    assert client.cmd("STLS") == b"-ERR TLS not available\r\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def test_auth_plain_with_and_without_initial_response(world: World):
    client = world.connect()
    assert client.cmd("AUTH") == b"+OK SASL mechanisms follow\r\nPLAIN\r\nLOGIN\r\n.\r\n"
    assert client.cmd("AUTH PLAIN " + b64("\0alice@example.com\0" + PASSWORD)).startswith(b"+OK maildrop")
    client.cmd("QUIT")
    client = world.connect()
    assert client.cmd("AUTH plain") == b"+ \r\n"
    assert client.cmd(b64("alice@example.com\0alice@example.com\0" + PASSWORD)).startswith(b"+OK maildrop")
    assert world.audit.events[-1][-2:] == ("PLAIN", "ok")


def test_auth_login_with_and_without_initial_response(world: World):
    client = world.connect()
    assert client.cmd("AUTH LOGIN") == b"+ VXNlcm5hbWU6\r\n"
    assert client.cmd(b64("alice@example.com")) == b"+ UGFzc3dvcmQ6\r\n"
    assert client.cmd(b64(PASSWORD)).startswith(b"+OK maildrop")
    client.cmd("QUIT")
    client = world.connect()
    assert client.cmd("AUTH LOGIN " + b64("alice@example.com")) == b"+ UGFzc3dvcmQ6\r\n"
    assert client.cmd(b64("nope")) == b"-ERR [AUTH] authentication failed\r\n"


def test_auth_cancel_bad_base64_and_other_identity(world: World):
    client = world.connect()
    client.cmd("AUTH PLAIN")
    assert client.cmd("*") == b"-ERR authentication cancelled\r\n"
    client.cmd("AUTH PLAIN")
    assert client.cmd("!!!") == b"-ERR invalid base64 in SASL response\r\n"
    assert client.cmd("AUTH PLAIN " + b64("bob@example.com\0alice@example.com\0" + PASSWORD)) == (
        b"-ERR [AUTH] authorization identity not allowed\r\n")
    assert client.cmd("AUTH CRAM-MD5") == b"-ERR unsupported authentication mechanism CRAM-MD5\r\n"
    assert client.cmd("AUTH PLAIN =") == b"-ERR [AUTH] malformed PLAIN response\r\n"
    assert client.cmd("NOOP").startswith(b"-ERR NOOP not valid")


def test_pipelined_commands_answer_in_order(world: World):
    client = world.connect()
    reply = client.send(f"USER alice@example.com\r\nPASS {PASSWORD}\r\nSTAT\r\nUIDL 1\r\nNOOP\r\nQUIT\r\n"
                        .encode())
    lines = reply.split(b"\r\n")
    assert lines[0] == b"+OK send PASS"
    assert lines[1].startswith(b"+OK maildrop has 3")
    assert lines[2].startswith(b"+OK 3 ")
    assert lines[3] == b"+OK 1 777.1"
    assert lines[4] == b"+OK"
    assert lines[5].startswith(b"+OK localhost POP3 server signing off")


def test_idle_timeout_closes_without_update(world: World):
    client = world.connect()
    client.login()
    client.cmd("DELE 1")
    world.clock.advance(599)
    assert not client.closed
    client.cmd("NOOP")
    world.clock.advance(600)
    assert client.take() == b"-ERR autologout: idle for too long\r\n"
    assert client.closed
    client.proto.connectionLost(None)
    assert world.inbox.expunged == []
    assert world.factory.locks.held() == frozenset()


def test_too_many_bad_commands_close_the_connection(world: World):
    client = world.connect()
    for _ in range(9):
        assert client.cmd("BOGUS") == b"-ERR unknown command\r\n"
    assert client.cmd("BOGUS") == b"-ERR unknown command\r\n-ERR too many bad commands, closing\r\n"
    assert client.closed


# --- one coroutine path (issue 14, structure 4) -------------------------------------


def test_every_handler_is_a_coroutine_function():
    from xmail.protocols.pop3.session import COMMANDS

    assert len(COMMANDS) == 14
    for name, command in COMMANDS.items():
        assert inspect.iscoroutinefunction(command.handler), name


class HeldPortal:
    """The world's portal, but each login answers only when the test says."""

    def __init__(self, portal: Any):
        self.portal = portal
        self.held: list[tuple[defer.Deferred, Any]] = []

    def login(self, *args: Any) -> defer.Deferred:
        d: defer.Deferred = defer.Deferred()
        self.held.append((d, args))
        return d

    def release(self) -> None:
        d, args = self.held.pop(0)
        self.portal.login(*args).chainDeferred(d)


def test_a_waiting_login_holds_back_pipelined_commands(world: World):
    held = world.ctx.core.portal = HeldPortal(world.ctx.core.portal)
    client = world.connect()
    assert client.send(f"USER alice@example.com\r\nPASS {PASSWORD}\r\nSTAT\r\nNOOP\r\n".encode()) == (
        b"+OK send PASS\r\n")  # RFC 2449 §6.6: nothing after PASS until it is answered
    held.release()
    lines = client.take().split(b"\r\n")
    assert lines[0].startswith(b"+OK maildrop has 3")
    assert lines[1].startswith(b"+OK 3 ") and lines[2:] == [b"+OK", b""]


@pytest.mark.parametrize("error, reply, logged", [
    (lambda: UserError("refused later", "IN-USE"), b"-ERR [IN-USE] refused later\r\n", False),
    (lambda: BadSyntax("bad later"), b"-ERR bad later\r\n", False),
    (lambda: RuntimeError("bug"), b"-ERR [SYS/TEMP] internal server error, try again later\r\n", True),
])
def test_an_error_after_a_wait_gets_the_same_replies(world: World, monkeypatch: Any, error: Any,
                                                     reply: bytes, logged: bool):
    from xmail.protocols.pop3 import session as pop3

    waiting: defer.Deferred = defer.Deferred()

    async def do_noop(self: Any) -> None:
        await waiting
        raise error()

    noop = pop3.COMMANDS["NOOP"]
    monkeypatch.setitem(pop3.COMMANDS._commands, "NOOP", dataclasses.replace(noop, handler=do_noop))
    faults: list[Any] = []
    observer = faults.append
    globalLogPublisher.addObserver(observer)
    try:
        client = world.connect()
        client.login()
        assert client.send(b"NOOP\r\nSTAT\r\n") == b""
        waiting.callback(None)
        assert client.take() == reply + b"+OK 3 %d\r\n" % sum(map(len, MESSAGES))
    finally:
        globalLogPublisher.removeObserver(observer)
    assert any(e.get("log_failure") is not None for e in faults) is logged


# --- random input -> well-formed replies, never an exception -----------------

MULTILINE_OK = {"CAPA", "RETR", "TOP"}


def read_replies(output: bytes, sent: list[bytes]) -> int:
    """Walk the replies to the lines sent; returns how many were answered.
    Every reply must be a status line, and multi-line ones end with "."."""
    lines = output.split(b"\r\n")
    assert lines[-1] == b""
    lines.pop()
    pos = 0
    answered = 0
    for line in sent:
        if pos == len(lines):
            break
        status = lines[pos]
        pos += 1
        assert status.startswith((b"+OK", b"-ERR", b"+ ")), (status, line)
        words = line.split()
        keyword = words[0].upper().decode("latin-1") if words else ""
        block = keyword in MULTILINE_OK or (keyword in ("LIST", "UIDL", "AUTH") and len(words) == 1)
        if status.startswith(b"+OK") and block:
            while lines[pos] != b".":
                pos += 1
            pos += 1
        answered += 1
    if pos < len(lines):  # the session's last words before closing
        assert lines[pos:] and all(x.startswith(b"-ERR") for x in lines[pos:]), lines[pos:]
    return answered


command_lines = st.one_of(
    st.sampled_from([b"CAPA", b"STAT", b"LIST", b"LIST 1", b"UIDL", b"UIDL 2", b"RETR 1", b"TOP 2 0",
                     b"DELE 1", b"RSET", b"NOOP", b"AUTH", b"AUTH PLAIN", b"AUTH LOGIN", b"STLS",
                     b"RETR 99", b"TOP 1 x", b"LIST -1", b"*", b"USER alice@example.com"]),
    st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(command_lines, max_size=30), st.booleans(), st.booleans())
def test_random_commands_get_well_formed_replies(lines, logged_in, pipelined):
    world = World()
    failures: list[Any] = []

    def observer(event: dict) -> None:
        level = event.get("log_level")
        if event.get("log_failure") is not None or getattr(level, "name", "") in ("error", "critical"):
            failures.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        client = world.connect()
        if logged_in:
            client.login()
        output = b""
        if pipelined:
            output = client.send(b"".join(line + b"\r\n" for line in lines))
        else:
            for line in lines:
                if client.closed:
                    break
                output += client.send(line + b"\r\n")
        answered = read_replies(output, lines)
        # Every line is answered unless the session ended or STLS dropped
        # what was pipelined after it.
        assert answered == len(lines) or client.closed or b"STLS" in [x.upper() for x in lines]
        client.proto.connectionLost(None)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert failures == []
    assert world.factory.locks.held() == frozenset()


# --- back-pressure -----------------------------------------------------------------


class SlowClientTransport(TLSStringTransport):
    """Asks its producer to pause once `limit` octets are waiting, like a
    TCP transport whose peer does not read."""

    limit = 100_000

    def write(self, data: bytes) -> None:
        super().write(data)
        if self.producer is not None and len(self.value()) > self.limit:
            self.producer.pauseProducing()


def test_slow_client_pauses_streaming_and_later_commands(world: World):
    from xmail.message.dotstuff import encode_message

    big = b"Subject: big\r\n\r\n" + b"".join(b".%05d dotted line of text\r\n" % i for i in range(20000))
    assert len(big) > 256 * 1024  # streamed, not sent in one write
    assert world.inbox.add(big) == 4
    transport = SlowClientTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    proto = world.factory.buildProtocol(transport.getPeer())
    proto.makeConnection(transport)
    client = Client(proto, transport)
    client.login()
    received = client.send(b"RETR 4\r\nNOOP\r\n")
    assert len(received) < SlowClientTransport.limit + 70_000  # stopped reading the file
    rounds = 0
    while not received.endswith(b"+OK\r\n"):
        proto.resumeProducing()  # the client caught up
        chunk = client.take()
        assert len(chunk) < SlowClientTransport.limit + 70_000
        received += chunk
        rounds += 1
        assert rounds < 100
    assert rounds > 3
    assert received == b"+OK %d octets\r\n" % len(big) + encode_message(big) + b"+OK\r\n"


def test_paused_connection_takes_no_new_command(world: World):
    client = world.connect()
    client.login()
    client.proto.pauseProducing()
    assert client.send(b"STAT\r\nNOOP\r\n") == b""
    client.proto.resumeProducing()
    assert client.take().endswith(b"\r\n+OK\r\n")


def test_pipelined_input_is_not_read_without_bound_while_paused(world: World):
    client = world.connect()
    client.login()
    client.proto.pauseProducing()
    client.send(b"NOOP\r\n" * 20000)
    assert client.transport.producerState == "paused"  # reading from the socket stopped
    client.proto.resumeProducing()
    assert client.take().count(b"+OK\r\n") == 20000
    assert client.transport.producerState == "producing"


def test_over_long_line_is_an_error_and_the_session_goes_on(world: World):
    client = world.connect()
    assert client.send(b"USER " + b"x" * 5000 + b"\r\n") == b"-ERR line too long\r\n"
    assert client.login().startswith(b"+OK maildrop has 3")


def run_bytes(chunks: list[bytes], logged_in: bool) -> tuple[bytes, bool]:
    world = World()
    client = world.connect()
    if logged_in:
        client.login()
    output = b""
    for chunk in chunks:
        if client.closed:
            break
        output += client.send(chunk)
    closed = client.closed
    client.proto.connectionLost(None)
    assert world.factory.locks.held() == frozenset()
    return output, closed


raw_input = st.lists(st.one_of(command_lines.map(lambda line: line + b"\r\n"), st.binary(max_size=30)),
                     max_size=20).map(b"".join)


@settings(max_examples=150, deadline=None)
@given(raw_input, st.booleans(), st.integers(min_value=1, max_value=9))
def test_random_bytes_any_split_same_replies_no_errors(data, logged_in, piece):
    failures: list[Any] = []

    def observer(event: dict) -> None:
        if event.get("log_failure") is not None:
            failures.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        whole = run_bytes([data], logged_in)
        split = run_bytes([data[i:i + piece] for i in range(0, len(data), piece)], logged_in)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert failures == []
    if b"STLS" not in data.upper():  # STLS drops what was already received: timing matters
        assert split == whole
    for line in whole[0].split(b"\r\n"):
        # Status lines and block lines only; a reply never leaks a bare LF.
        assert b"\n" not in line


def test_connection_dropped_mid_stream_releases_everything(world: World):
    big = b"Subject: big\r\n\r\n" + b"line of text\r\n" * 40000
    assert world.inbox.add(big) == 4
    opened: list[Any] = []
    original = world.inbox.open_message

    def tracking_open(uid: int) -> Any:
        opened.append(original(uid))
        return opened[-1]

    world.inbox.open_message = tracking_open  # type: ignore[method-assign]
    transport = SlowClientTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    proto = world.factory.buildProtocol(transport.getPeer())
    proto.makeConnection(transport)
    client = Client(proto, transport)
    client.login()
    client.send(b"DELE 1\r\nRETR 4\r\nNOOP\r\n")
    assert not opened[0].closed  # paused mid-message
    proto.connectionLost(None)
    assert opened[0].closed
    assert world.factory.locks.held() == frozenset()
    assert world.inbox.expunged == []
    assert world.realm.logouts == ["alice@example.com"]
