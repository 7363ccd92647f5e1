# -*- test-case-name: tests.protocols.managesieve.test_session -*-
"""The ManageSieve protocol and state machine on a StringTransport with a
Clock (Twisted's unit-test standard): timers without sleeping, input fed
byte by byte, write back-pressure, hostile input.

The script store is the real one (xmail.sieve.storage.SieveScripts on a
temporary LMDB index, written synchronously); the portal is twisted.cred's
in-memory checker with a small realm.  The acceptance tests against the
whole service are test_server.py and test_clients.py.
"""

from __future__ import annotations

import base64
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
from zope.interface import implementer

from xmail.auth.interfaces import IMailAccount, LoginThrottled
from xmail.config import Settings, parse
from xmail.context import CoreServices, ServerContext
from xmail.db.environment import IndexEnvironment
from xmail.protocols.managesieve.server import IDLE_TIMEOUT, ManageSieveFactory
from xmail.protocols.managesieve.session import COMMANDS, State
from xmail.sieve.storage import SieveScripts

ALICE = "alice@example.com"
PASSWORD = "secret pw"
PLAIN = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())
LOGIN = b'AUTHENTICATE "PLAIN" "' + PLAIN + b'"\r\n'


@implementer(IMailAccount)
@dataclass
class Account:
    address: str
    mailbox: Any = None
    record: Any = None


@implementer(IRealm)
@dataclass
class Realm:
    logouts: list[str] = field(default_factory=list)

    def requestAvatar(self, avatar_id: Any, mind: Any, *interfaces: Any) -> Any:
        address = avatar_id.decode() if isinstance(avatar_id, bytes) else avatar_id
        return IMailAccount, Account(address), lambda: self.logouts.append(address)


class ThrottledChecker:
    """A checker that refuses every attempt as the throttle does."""

    credentialInterfaces = InMemoryUsernamePasswordDatabaseDontUse.credentialInterfaces

    def requestAvatarId(self, credentials: Any) -> Any:
        return defer.fail(LoginThrottled("too many failures"))


class AuditRecorder:
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def login(self, *args: Any) -> None:
        self.events.append(("login", *args))

    def logout(self, *args: Any) -> None:
        self.events.append(("logout", *args))

    def mail(self, event: str, **fields: Any) -> None:
        self.events.append(("mail", event, fields))

    def admin(self, operator: str, command: Any, result: str, **fields: Any) -> None:
        self.events.append(("admin", operator, command, result))


class TLSStringTransport(StringTransport):
    tls_started = False

    def startTLS(self, contextFactory: Any) -> None:
        self.tls_started = True


class World:
    def __init__(self, tmp_path: Any, settings: Settings | None = None, throttled: bool = False):
        self.clock = task.Clock()
        self.env = IndexEnvironment(str(tmp_path / "index"))
        self.env.open()
        self.scripts = SieveScripts(self.env)  # write_sync: plain values
        checker = (ThrottledChecker() if throttled
                   else InMemoryUsernamePasswordDatabaseDontUse(**{ALICE: PASSWORD.encode()}))
        self.realm = Realm()
        self.audit = AuditRecorder()
        self.ctx = ServerContext(settings=settings or Settings(), reactor=self.clock,
                                 core=CoreServices(portal=Portal(self.realm, [checker]), audit=self.audit,
                                                   sieve_scripts=self.scripts),
                                 tls=object())
        self.factory = ManageSieveFactory(self.ctx)

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


@pytest.fixture
def world(tmp_path: Any) -> Any:
    w = World(tmp_path)
    yield w
    w.env.close()


def test_every_command_is_in_the_one_table():
    assert set(COMMANDS) == {
        "CAPABILITY", "NOOP", "LOGOUT", "STARTTLS", "AUTHENTICATE", "UNAUTHENTICATE", "LISTSCRIPTS",
        "GETSCRIPT", "HAVESPACE", "CHECKSCRIPT", "PUTSCRIPT", "SETACTIVE", "DELETESCRIPT", "RENAMESCRIPT"}


SESSION = (LOGIN + b'LISTSCRIPTS\r\nSETACTIVE "main"\r\nGETSCRIPT {4+}\r\nmain\r\n'
           b'RENAMESCRIPT "main" "other"\r\nSETACTIVE ""\r\nDELETESCRIPT "other"\r\n'
           b'NOOP "t"\r\nUNAUTHENTICATE\r\nLISTSCRIPTS\r\nLOGOUT\r\n')


def transcript(world: World, chunk: int | None) -> bytes:
    world.scripts.put(ALICE, "main", "keep;\r\n")
    client = world.connect()
    out = client.greeting
    pieces = [SESSION] if chunk is None else [SESSION[i:i + chunk] for i in range(0, len(SESSION), chunk)]
    for piece in pieces:
        out += client.send(piece)
    world.scripts.remove_any(ALICE, "main")
    world.scripts.remove_any(ALICE, "other")
    return out


def test_a_whole_session_byte_by_byte_reads_as_it_does_whole(world: World):
    whole = transcript(world, None)
    assert transcript(world, 1) == whole
    assert transcript(world, 5) == whole
    assert whole.endswith(b'OK "Logout completed."\r\n')
    assert b'"main"\r\n' in whole and b"{7}\r\nkeep;\r\n\r\n" in whole
    assert b'OK (TAG "t") "Done"\r\n' in whole
    assert whole.count(b"\r\nNO ") == 1  # only LISTSCRIPTS after UNAUTHENTICATE
    admin = [e[2] for e in world.audit.events if e[0] == "admin"]
    assert admin[:4] == [["SETACTIVE", "main"], ["RENAMESCRIPT", "main"], ["SETACTIVE", ""],
                         ["DELETESCRIPT", "other"]]
    assert world.realm.logouts == [ALICE] * 3  # each UNAUTHENTICATE gives the avatar back


def test_pipelined_commands_wait_while_the_client_does_not_read(world: World):
    client = world.connect()
    client.send(LOGIN)
    client.proto.pauseProducing()  # the client stopped reading
    assert client.send(b"NOOP\r\n" * 3) == b""
    client.proto.resumeProducing()
    assert client.take() == b'OK "Done"\r\n' * 3


def test_the_idle_timer(world: World):
    client = world.connect()
    client.send(LOGIN)  # the login deadline is shorter
    world.clock.advance(IDLE_TIMEOUT - 1)
    assert client.send(b"NOOP\r\n") == b'OK "Done"\r\n'
    world.clock.advance(IDLE_TIMEOUT)
    assert client.take().startswith(b"BYE (TRYLATER)")
    assert client.transport.disconnecting


def test_the_login_deadline_and_the_command_deadline(tmp_path: Any):
    world = World(tmp_path, parse("[limits]\nlogin_timeout = 30\ncommand_timeout = 10\n"))
    client = world.connect()
    world.clock.advance(29)
    assert not client.transport.disconnecting
    world.clock.advance(2)
    assert client.take() == b'BYE (TRYLATER) "Login took too long"\r\n'
    client = world.connect()
    client.send(LOGIN)
    world.clock.advance(60)  # logged in: no login deadline
    assert not client.transport.disconnecting
    client.send(b'PUTSCRIPT "x" {100+}\r\nabc')  # the rest never comes
    world.clock.advance(11)
    assert client.take() == b'BYE (TRYLATER) "Command took too long to arrive"\r\n'


def test_starttls_discards_pipelined_input_and_reissues_capabilities(world: World):
    client = world.connect("192.0.2.7")
    assert b'"SASL" ""' in client.greeting and b'"STARTTLS"' in client.greeting
    out = client.send(b"STARTTLS\r\n" + LOGIN)
    assert client.transport.tls_started
    assert out.startswith(b'OK "Begin TLS negotiation now."\r\n"IMPLEMENTATION" "xmail"\r\n')
    assert b'"SASL" "PLAIN LOGIN"' in out and b'"STARTTLS"' not in out
    assert out.endswith(b'OK "TLS negotiation successful."\r\n')  # the login was not run
    assert client.proto.session.state is State.NONAUTH


def test_a_throttled_login_is_trylater(tmp_path: Any):
    world = World(tmp_path, throttled=True)
    client = world.connect()
    assert client.send(LOGIN) == (b'NO (TRYLATER) "Authentication temporarily unavailable, '
                                  b'try again later"\r\n')
    assert world.audit.events == [("login", ALICE, "managesieve", "127.0.0.1", "PLAIN", "throttled")]


def test_a_lost_connection_releases_the_login(world: World):
    client = world.connect()
    client.send(LOGIN)
    client.proto.connectionLost(None)
    assert world.realm.logouts == [ALICE]
    assert ("logout", ALICE, "managesieve", "127.0.0.1") in world.audit.events


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.sampled_from([
    b"NOOP", b'"x"', b" ", b"{3+}\r\nabc", b"{2}\r\n", b"\r\n", b"\n", b"\x00", b"\xff", b"*",
    b"LISTSCRIPTS", b"GETSCRIPT", b'SETACTIVE ""', b"HAVESPACE", b"9999999999", b'"\\"',
    b"AUTHENTICATE", b'"PLAIN"', b'"LOGIN"', b"STARTTLS", b"UNAUTHENTICATE", b"(", b"{99999999+}",
]), max_size=40), st.integers(min_value=1, max_value=9))
def test_random_input_gets_answers_never_a_crash(world: World, pieces: list[bytes], chunk: int):
    client = world.connect()
    client.send(LOGIN)
    data = b"".join(pieces)
    out = b""
    for i in range(0, len(data), chunk):
        out += client.send(data[i:i + chunk])
    for line in out.split(b"\r\n"):
        if line:
            # Status lines, or strings (capabilities, a SASL challenge).
            assert line.startswith((b"OK", b"NO", b"BYE", b'"')), out
    assert b"Internal server error" not in out
    client.proto.connectionLost(None)
