"""Login throttling: delays, refusals, spraying, the owner from a new address.

Unit tests drive LoginThrottle/ThrottledChecker with a task.Clock, so the
delays are measured exactly without sleeping; the acceptance tests at the
end go through the portal of a running server and through real IMAP/POP3
sockets from 127.0.0.2 and 127.0.0.3, in real time at a small scale.
"""

from __future__ import annotations

import socket
import ssl
import time

import pytest
from twisted.cred.checkers import InMemoryUsernamePasswordDatabaseDontUse
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task

from tests.conftest import PASSWORD
from xmail.auth.credentials import LoginCredentials, login_credentials
from xmail.auth.interfaces import (
    AccountDisabled,
    IFailureCounts,
    ILoginThrottle,
    LoginThrottled,
    LoginUnavailable,
)
from xmail.auth.throttle import (
    LoginThrottle,
    MemoryFailureCounts,
    ThrottledChecker,
    ThrottlePolicy,
    backoff,
    client_key,
)
from xmail.config import LimitSettings

GOOD = b"right password"
OWNER = b"owner@example.com"
ATTACKER = "192.0.2.66"
HOME = "198.51.100.7"


class Harness:
    """A ThrottledChecker over an in-memory user database and a fake clock;
    attempt() records when each answer arrives."""

    def __init__(self, policy: ThrottlePolicy | None = None, **kw):
        self.clock = task.Clock()
        self.throttle = LoginThrottle(self.clock, policy, **kw)
        users = InMemoryUsernamePasswordDatabaseDontUse()
        users.addUser(OWNER, GOOD)
        for i in range(200):
            users.addUser(b"user%d@example.com" % i, GOOD)
        self.checker = ThrottledChecker(users, self.throttle)

    def start(self, ip: str | None, password: bytes = b"guess", user: bytes = OWNER):
        creds = (login_credentials(user, password, client_ip=ip, protocol="imap") if ip
                 else UsernamePassword(user, password))
        d = self.checker.requestAvatarId(creds)
        outcome: list = []
        started = self.clock.seconds()
        d.addBoth(lambda r: outcome.append((r, self.clock.seconds() - started)))
        return outcome

    def attempt(self, ip: str | None, password: bytes = b"guess", user: bytes = OWNER):
        """-> (result or Failure, seconds until the answer), advancing the clock."""
        outcome = self.start(ip, password, user)
        for _ in range(200):
            if outcome:
                break
            self.clock.advance(0.5)
        assert outcome, "no answer within 100 s"
        return outcome[0]


def _is(result, exc):
    return getattr(result, "check", lambda *_: False)(exc) is not None


def test_interfaces_and_credentials():
    throttle = LoginThrottle(task.Clock())
    assert ILoginThrottle.providedBy(throttle) and IFailureCounts.providedBy(throttle.counts)
    creds = login_credentials("a@example.com", "pw", client_ip="127.0.0.2", protocol="pop3")
    assert isinstance(creds, LoginCredentials) and creds.checkPassword("pw")
    assert (creds.client_ip, creds.protocol) == ("127.0.0.2", "pop3")
    assert "pw" not in repr(creds)
    assert issubclass(LoginThrottled, LoginUnavailable)


def test_backoff_schedule():
    assert [backoff(n, 3, 60) for n in range(12)] == [0, 0, 0, 2, 4, 8, 16, 32, 60, 60, 60, 60]
    assert backoff(10**6, 3, 60) == 60
    assert backoff(5, 0, 60) == 0


def test_pair_delays_after_three_failures_then_refuses_for_fifteen_minutes():
    h = Harness()
    delays = []
    for _ in range(10):
        result, seconds = h.attempt(ATTACKER)
        assert _is(result, UnauthorizedLogin) and not _is(result, LoginThrottled)
        delays.append(seconds)
    # about 2 s, 4 s, 8 s ... capped at 60 s (the clock steps 0.5 s)
    assert delays == [0, 0, 0, 2, 4, 8, 16, 32, 60, 60]
    # the 11th attempt is refused outright, at once, even with the right password
    result, seconds = h.attempt(ATTACKER, GOOD)
    assert _is(result, LoginThrottled) and seconds == 0
    assert result.value.retry_after == pytest.approx(900, abs=1)
    h.clock.advance(899)
    result, _ = h.attempt(ATTACKER, GOOD)
    assert _is(result, LoginThrottled)
    h.clock.advance(2)
    result, seconds = h.attempt(ATTACKER, GOOD)
    assert result == OWNER and seconds == 0


def test_success_resets_the_pair():
    h = Harness()
    for _ in range(5):
        h.attempt(ATTACKER)
    result, seconds = h.attempt(ATTACKER, GOOD)
    assert result == OWNER and seconds == 8
    for _ in range(3):
        result, seconds = h.attempt(ATTACKER)
        assert seconds == 0
    assert h.attempt(ATTACKER)[1] == 2


def test_failures_are_forgotten_fifteen_minutes_after_the_last():
    h = Harness()
    for _ in range(5):
        h.attempt(ATTACKER)
    h.clock.advance(901)
    assert h.attempt(ATTACKER)[1] == 0
    assert len(h.throttle.counts) == 3  # pair, ip and account: one fresh failure each


def test_the_owner_logs_in_from_another_address_during_an_attack():
    h = Harness()
    for _ in range(10):
        h.attempt(ATTACKER)
    assert _is(h.attempt(ATTACKER, GOOD)[0], LoginThrottled)
    result, seconds = h.attempt(HOME, GOOD)
    assert result == OWNER and seconds == 0


def test_a_distributed_attack_slows_but_never_locks_out_the_owner():
    h = Harness()
    # 300 attackers, 3 guesses each: no pair ever reaches a delay
    for n in range(300):
        for _ in range(3):
            h.attempt(f"10.0.{n // 250}.{n % 250}")
    result, seconds = h.attempt("10.9.9.9")
    assert _is(result, UnauthorizedLogin) and seconds == 15  # account_max_delay
    # the owner from a new address: slowed to 15 s at most, never refused
    result, seconds = h.attempt("203.0.113.5", GOOD)
    assert result == OWNER and 0 < seconds <= 15
    # ... and from then on that address is trusted for the account
    result, seconds = h.attempt("203.0.113.5", GOOD)
    assert result == OWNER and seconds == 0


def test_password_spraying_from_one_address_is_slowed_then_refused():
    h = Harness()
    delays = []
    for i in range(50):
        result, seconds = h.attempt(ATTACKER, user=b"user%d@example.com" % i)
        assert _is(result, UnauthorizedLogin) and not _is(result, LoginThrottled)
        delays.append(seconds)
    assert delays[:10] == [0] * 10 and delays[10:14] == [2, 4, 8, 16] and max(delays) == 60
    result, seconds = h.attempt(ATTACKER, GOOD, user=b"user199@example.com")
    assert _is(result, LoginThrottled) and seconds == 0


def test_a_trusted_address_is_not_refused_for_others_spraying_from_it():
    h = Harness()
    assert h.attempt(ATTACKER, GOOD)[0] == OWNER  # the owner behind the same NAT
    for i in range(60):
        h.attempt(ATTACKER, user=b"user%d@example.com" % i)
    result, seconds = h.attempt(ATTACKER, GOOD)
    assert result == OWNER and seconds == 0


def test_parallel_guesses_count_while_in_flight():
    h = Harness()
    outcomes = [h.start(ATTACKER) for _ in range(20)]
    # three checked at once; 4..10 wait (their predecessors count while they
    # wait); 11..20 are refused before any check
    failed = [o for o in outcomes if o and not _is(o[0][0], LoginThrottled)]
    refused = [o for o in outcomes if o and _is(o[0][0], LoginThrottled)]
    waiting = [o for o in outcomes if not o]
    assert (len(failed), len(waiting), len(refused)) == (3, 7, 10)
    h.clock.advance(61)
    assert all(o and _is(o[0][0], UnauthorizedLogin) for o in waiting)
    assert h.throttle.counts.get("pair", f"{ATTACKER} owner@example.com", h.clock.seconds())[0] == 10


def test_successes_are_never_delayed():
    h = Harness()
    # a client opening six connections at once with the right password
    outcomes = [h.start(HOME, GOOD) for _ in range(6)]
    assert [bool(o) for o in outcomes] == [True] * 6
    assert all(o[0][0] == OWNER and o[0][1] == 0 for o in outcomes)


class SlowChecker:
    """A checker whose answer comes later (like the verifier pool)."""

    credentialInterfaces = ThrottledChecker.credentialInterfaces

    def __init__(self, clock):
        self.clock = clock

    def requestAvatarId(self, credentials):
        d = task.deferLater(self.clock, 0.1, lambda: None)
        if credentials.password == GOOD:
            return d.addCallback(lambda _: credentials.username)
        return d.addCallback(lambda _: defer.fail(UnauthorizedLogin()))


def test_early_release_when_checks_take_time():
    clock = task.Clock()
    throttle = LoginThrottle(clock)
    checker = ThrottledChecker(SlowChecker(clock), throttle)
    results = []
    for _ in range(5):
        creds = login_credentials(OWNER, GOOD, client_ip=HOME, protocol="imap")
        checker.requestAvatarId(creds).addBoth(lambda r: results.append((r, clock.seconds())))
    clock.advance(0.1)
    # the first three were checked at once; their success released the
    # two that waited only because the first three were in flight
    assert len(results) == 3
    clock.advance(0.1)
    assert [r for r, _ in results] == [OWNER] * 5 and results[-1][1] == pytest.approx(0.2)


def test_an_office_behind_one_address_logs_in_at_once():
    """Hundreds of users behind one NAT address log in together: logins still
    being verified are not counted against the address."""
    clock = task.Clock()
    checker = ThrottledChecker(SlowChecker(clock), LoginThrottle(clock))
    results = []
    for i in range(200):
        creds = login_credentials(b"user%d@example.com" % i, GOOD, client_ip=HOME, protocol="imap")
        checker.requestAvatarId(creds).addBoth(results.append)
    clock.advance(0.1)
    assert results == [b"user%d@example.com" % i for i in range(200)]


def test_error_outcomes_count_neither_way():
    clock = task.Clock()
    throttle = LoginThrottle(clock)
    for _ in range(20):
        ticket = throttle.admit(ATTACKER, "a@example.com")
        result = []
        ticket.addCallback(result.append)
        throttle.finished(result[0], "error")
    assert throttle.counts.get("pair", f"{ATTACKER} a@example.com", clock.seconds()) == (0, 0.0)


class DisabledChecker:
    """Every password is right, every account disabled."""

    credentialInterfaces = ThrottledChecker.credentialInterfaces

    def requestAvatarId(self, credentials):
        return defer.fail(AccountDisabled("disabled"))


def test_attempts_on_a_disabled_account_are_counted():
    """Issue 16 #10: an attempt on a disabled account counts as a failure,
    so the throttle's answers do not tell it from a wrong password."""
    clock = task.Clock()
    throttle = LoginThrottle(clock)
    checker = ThrottledChecker(DisabledChecker(), throttle)
    results = []
    for _ in range(2):
        creds = login_credentials(OWNER, GOOD, client_ip=ATTACKER, protocol="imap")
        checker.requestAvatarId(creds).addErrback(results.append)
    assert [r.check(AccountDisabled) for r in results] == [AccountDisabled] * 2
    assert throttle.counts.get("pair", f"{ATTACKER} owner@example.com", clock.seconds())[0] == 2


def test_without_an_address_only_the_account_rule_applies():
    h = Harness()
    delays = [h.attempt(None)[1] for _ in range(25)]
    assert delays[:20] == [0] * 20 and delays[20:] == [2, 4, 8, 15, 15]
    assert h.attempt(None, GOOD)[0] == OWNER


def test_memory_is_bounded():
    h = Harness(max_entries=100)
    for n in range(1000):
        h.attempt(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}", user=b"user%d@example.com" % (n % 200))
    counts = h.throttle.counts
    assert isinstance(counts, MemoryFailureCounts)
    assert all(len(table) <= 100 for table in counts._scopes.values())
    assert len(counts._trusted) <= 100 and not counts._flights


def test_client_keys():
    assert client_key("2001:db8:1:2:3:4:5:6") == client_key("2001:db8:1:2::9") == "2001:db8:1:2::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("fe80::1%eth0") == "fe80::/64"
    assert client_key("not an address") == "not an address"


def test_policy_from_limits():
    limits = LimitSettings(login_failures_before_delay=1, login_max_delay=5, login_failures_before_refusal=4,
                           login_refusal_seconds=60)
    h = Harness(ThrottlePolicy.from_limits(limits))
    assert [h.attempt(ATTACKER)[1] for _ in range(4)] == [0, 2, 4, 5]
    assert _is(h.attempt(ATTACKER)[0], LoginThrottled)


# -- against the running server -------------------------------------------------

SMALL = """
[limits]
login_failures_before_delay = 2
login_max_delay = 2
login_failures_before_refusal = 4
login_refusal_seconds = 60
"""


def _portal_login(server, user, password, ip):
    from xmail.auth.interfaces import IMailAccount

    started = time.monotonic()
    creds = login_credentials(user, password, client_ip=ip, protocol="imap")
    try:
        result = server.call(server.ctx.portal.login, creds, None, IMailAccount)[1].address
    except (UnauthorizedLogin, LoginUnavailable) as e:
        result = e
    return result, time.monotonic() - started


def test_through_the_portal_of_a_running_server(make_server):
    server = make_server(SMALL)
    server.add_domain("example.com")
    server.add_user("alice@example.com")
    timings = []
    for _ in range(4):
        result, seconds = _portal_login(server, "alice@example.com", "wrong", "127.0.0.2")
        assert isinstance(result, UnauthorizedLogin) and not isinstance(result, LoginThrottled)
        timings.append(seconds)
    assert timings[0] < 1.5 and timings[1] < 1.5
    assert 2.0 <= timings[2] < 3.5 and 2.0 <= timings[3] < 3.5
    # refused outright now, the right password included; another spelling
    # of the same account shares the count
    result, seconds = _portal_login(server, "ALICE@example.com", PASSWORD, "127.0.0.2")
    assert isinstance(result, LoginThrottled) and seconds < 0.5
    # the owner from another address is not affected
    result, seconds = _portal_login(server, "alice@example.com", PASSWORD, "127.0.0.3")
    assert result == "alice@example.com" and seconds < 1.5
    assert server.ctx.portal.throttle.refused == 1


def _tls_socket(port: int, source: str) -> ssl.SSLSocket:
    # 127.0.0.2 and .3 play remote clients: plaintext login is refused
    # there, so these go through the implicit-TLS listeners.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    raw = socket.create_connection(("127.0.0.1", port), timeout=30, source_address=(source, 0))
    return context.wrap_socket(raw, server_hostname="mail.example.com")


def _imap_login_from(port: int, source: str, password: str):
    sock = _tls_socket(port, source)
    try:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"* OK")
        started = time.monotonic()
        sock.sendall(b'a1 LOGIN alice@example.com "' + password.encode() + b'"\r\n')
        while not (line := reader.readline()).startswith(b"a1 "):
            assert line, "connection closed"
        return line.decode().strip(), time.monotonic() - started
    finally:
        sock.close()


def _pop3_login_from(port: int, source: str, password: str) -> str:
    sock = _tls_socket(port, source)
    try:
        reader = sock.makefile("rb")
        assert reader.readline().startswith(b"+OK")
        sock.sendall(b"USER alice@example.com\r\n")
        assert reader.readline().startswith(b"+OK")
        sock.sendall(b"PASS " + password.encode() + b"\r\n")
        return reader.readline().decode().strip()
    finally:
        sock.close()


def test_imap_sockets_from_two_source_addresses(make_server):
    server = make_server(SMALL)
    server.add_domain("example.com")
    server.add_user("alice@example.com")
    port = server.port("imaps")
    for _ in range(4):
        result, _ = _imap_login_from(port, "127.0.0.2", "wrong")
        assert result.startswith("a1 NO [AUTHENTICATIONFAILED]"), result
    result, seconds = _imap_login_from(port, "127.0.0.2", PASSWORD)
    assert result.startswith("a1 NO [UNAVAILABLE]") and seconds < 1.0, result
    result, _ = _imap_login_from(port, "127.0.0.3", PASSWORD)
    assert result.startswith("a1 OK"), result


def test_pop3_sockets_from_two_source_addresses(make_server):
    server = make_server(SMALL)
    server.add_domain("example.com")
    server.add_user("alice@example.com")
    port = server.port("pop3s")
    for _ in range(4):
        result = _pop3_login_from(port, "127.0.0.2", "wrong")
        assert result == "-ERR [AUTH] authentication failed", result
    result = _pop3_login_from(port, "127.0.0.2", PASSWORD)
    assert result.startswith("-ERR [SYS/TEMP]"), result
    assert _pop3_login_from(port, "127.0.0.3", PASSWORD).startswith("+OK")


def test_memory_counts_never_evict_an_active_refusal():
    """Issue 16 #9: a full table made room by dropping the oldest record,
    refusals included, so fresh names wiped an attacker's refusal."""
    counts = MemoryFailureCounts(forget_after=900.0, max_entries=20)
    now = 1000.0
    counts.add_failure("pair", f"{ATTACKER} owner", now)
    counts.refuse("pair", f"{ATTACKER} owner", now + 900)
    for n in range(100):
        counts.add_failure("pair", f"10.0.0.{n} someone", now + 1 + n)
    assert counts.get("pair", f"{ATTACKER} owner", now + 200) == (1, now + 900)
    assert len(counts) <= 20


def test_memory_counts_full_of_refusals_throttle_a_new_key():
    clock = task.Clock()
    clock.advance(1000)
    counts = MemoryFailureCounts(forget_after=900.0, max_entries=20)
    for n in range(20):
        counts.add_failure("ip", f"10.0.0.{n}", clock.seconds())
        counts.refuse("ip", f"10.0.0.{n}", clock.seconds() + 900 + n)
    throttle = LoginThrottle(clock, counts=counts)
    refused = []
    throttle.admit("192.0.2.99", "new@example.com").addErrback(refused.append)
    assert refused and refused[0].check(LoginThrottled)
    assert refused[0].value.retry_after == pytest.approx(900)
    assert len(counts) == 20 and not counts._flights
    clock.advance(901)  # the first refusal ended: room for the newcomer
    admitted = []
    throttle.admit("192.0.2.99", "new@example.com").addCallback(admitted.append)
    assert admitted
