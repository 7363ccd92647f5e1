"""The one login path (xmail.auth.login): portal + authzid + per-user slot
+ audit -> a Lease the session owns.  Unit tests on an in-memory portal;
the acceptance tests at the end log in over real IMAP and POP3 sockets."""

from __future__ import annotations

import base64
import imaplib
import poplib
from dataclasses import dataclass, field
from typing import Any

import pytest
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.error import UnauthorizedLogin
from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from zope.interface import implementer

from tests.conftest import PASSWORD, wait_until
from xmail.auth.interfaces import (
    AccountDisabled,
    AuthorizationFailed,
    IMailAccount,
    LoginThrottled,
    SessionLimit,
)
from xmail.auth.login import Lease, login
from xmail.auth.sasl import Credentials
from xmail.limits import UserConnections

ALICE = "alice@example.com"


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


class Audit:
    def __init__(self) -> None:
        self.events: list[tuple] = []

    def login(self, account, protocol, ip, method, result) -> None:
        self.events.append(("login", account, protocol, method, result))

    def logout(self, account, protocol, ip) -> None:
        self.events.append(("logout", account, protocol))


class Directory:
    def resolve(self, address: str) -> str | None:
        return {"alice@example.com": ALICE, "info@example.com": ALICE,
                "bob@example.com": "bob@example.com"}.get(address)


class RaisingChecker:
    credentialInterfaces = InMemoryUsernamePasswordDatabaseDontUse.credentialInterfaces

    def __init__(self, error: Exception):
        self.error = error

    def requestAvatarId(self, credentials: Any) -> Any:
        return defer.fail(self.error)


@dataclass
class Ctx:
    portal: Any
    connections: Any
    audit: Any
    directory: Any


def make_ctx(limit: int = 2, checker: Any = None) -> tuple[Ctx, Realm]:
    realm = Realm()
    checker = checker or InMemoryUsernamePasswordDatabaseDontUse(**{ALICE: b"pw"})
    return Ctx(Portal(realm, [checker]), UserConnections(limit), Audit(), Directory()), realm


def run(ctx: Ctx, credentials: Credentials, protocol: str = "imap") -> Any:
    results: list[Any] = []
    login(ctx, credentials, protocol=protocol, client_ip="192.0.2.1", method="PLAIN").addBoth(results.append)
    assert results, "the in-memory portal answers at once"
    return results[0]


def test_a_lease_holds_the_slot_until_released_once():
    ctx, realm = make_ctx()
    lease = run(ctx, Credentials(ALICE, "pw"))
    assert isinstance(lease, Lease) and lease.address == ALICE and lease.account.address == ALICE
    assert ctx.connections.count(ALICE, "imap") == 1
    assert ctx.audit.events == [("login", ALICE, "imap", "PLAIN", "ok")]
    lease.release()
    lease.release()
    assert ctx.connections.count(ALICE, "imap") == 0 and lease.released
    assert realm.logouts == [ALICE]
    assert ctx.audit.events[1:] == [("logout", ALICE, "imap")]


def test_slots_are_per_user_and_protocol_and_refused_over_the_cap():
    ctx, realm = make_ctx(limit=2)
    leases = [run(ctx, Credentials(ALICE, "pw")) for _ in range(2)]
    third = run(ctx, Credentials(ALICE, "pw"))
    assert third.check(SessionLimit) and realm.logouts == [ALICE]  # its avatar logged out
    assert ctx.audit.events[-1] == ("login", ALICE, "imap", "PLAIN", "throttled")
    other = run(ctx, Credentials(ALICE, "pw"), protocol="pop3")
    assert isinstance(other, Lease)
    leases[0].release()
    assert isinstance(run(ctx, Credentials(ALICE, "pw")), Lease)


def test_failures_are_audited_once_each():
    ctx, _ = make_ctx()
    assert run(ctx, Credentials(ALICE, "wrong")).check(UnauthorizedLogin)
    for error in (AccountDisabled("x"), LoginThrottled("x", 5)):
        ctx.portal = Portal(Realm(), [RaisingChecker(error)])
        assert run(ctx, Credentials(ALICE, "pw")).check(type(error))
    assert [e[-1] for e in ctx.audit.events] == ["fail", "disabled", "throttled"]
    assert ctx.connections.count(ALICE, "imap") == 0


def test_the_authorisation_identity_must_be_the_users_own_address():
    ctx, realm = make_ctx()
    assert isinstance(run(ctx, Credentials(ALICE, "pw", authzid="INFO@example.com")), Lease)
    refused = run(ctx, Credentials(ALICE, "pw", authzid="bob@example.com"))
    assert refused.check(AuthorizationFailed) and refused.check(UnauthorizedLogin)
    assert realm.logouts == [ALICE] and ctx.connections.count(ALICE, "imap") == 1
    assert ctx.audit.events[-1] == ("login", ALICE, "imap", "PLAIN", "fail")


def test_every_release_step_runs_even_if_one_fails():
    done: list[str] = []

    def broken() -> None:
        raise RuntimeError("boom")

    lease = Lease(ALICE, on_release=[broken, lambda: done.append("slot")])
    lease.release()
    assert done == ["slot"] and lease.released


# -- real sockets ------------------------------------------------------------------


@pytest.fixture
def capped(make_server: Any) -> Any:
    srv = make_server("[limits]\nmax_connections_per_user = 2\n")
    srv.add_domain("example.com")
    srv.add_user(ALICE)
    return srv


def test_imap_sessions_hold_a_slot_until_logout(capped: Any) -> None:
    port = capped.port("imap")
    first, second, third = (imaplib.IMAP4("127.0.0.1", port) for _ in range(3))
    first.login(ALICE, PASSWORD)
    second.login(ALICE, PASSWORD)
    with pytest.raises(imaplib.IMAP4.error, match=r"\[LIMIT\]"):
        third.login(ALICE, PASSWORD)
    first.logout()
    wait_until(lambda: capped.ctx.connections.count(ALICE, "imap") == 1, what="the slot released")
    assert third.login(ALICE, PASSWORD)[0] == "OK"
    for client in (second, third):
        client.logout()
    wait_until(lambda: capped.ctx.connections.count(ALICE, "imap") == 0, what="every slot released")


def test_pop3_logins_go_through_the_same_path(capped: Any) -> None:
    port = capped.port("pop3")
    client = poplib.POP3("127.0.0.1", port)
    client.user(ALICE)
    assert client.pass_(PASSWORD).startswith(b"+OK")
    assert capped.ctx.connections.count(ALICE, "pop3") == 1
    client.quit()
    wait_until(lambda: capped.ctx.connections.count(ALICE, "pop3") == 0, what="the POP3 slot released")
    # AUTH PLAIN with the same rule and the same audit as every protocol
    client = poplib.POP3("127.0.0.1", port)
    token = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    assert client._shortcmd(f"AUTH PLAIN {token}").startswith(b"+OK")
    client.quit()
    wait_until(lambda: capped.ctx.connections.count(ALICE, "pop3") == 0, what="the POP3 slot released")
