# -*- test-case-name: tests.auth.test_throttle -*-
"""Brute-force throttling for every password login (SMTP AUTH, POP3, IMAP).

Three counts of recent failures, each forgotten `refusal_seconds` after its
last failure:

- per (client address, account): from `failures_before_delay` failures on,
  each attempt is answered only after 2 s, 4 s, 8 s ... (at most `max_delay`);
  from `failures_before_refusal` on, attempts are refused outright
  (LoginThrottled, without checking the password) for `refusal_seconds`.
  A success resets it.
- per client address across accounts (password spraying): the same shape
  with its own thresholds.
- per account across addresses: delays only, at most `account_max_delay`,
  never a refusal, so an attack from many addresses slows the owner's login
  from a new address but cannot lock the owner out.  An address the account
  logged in from successfully is trusted for that account: neither the
  per-address nor the per-account counts slow it (only its own pair count).

Attempts still being checked count as failures until they end, so a client
cannot get a hundred guesses in before the first answer by sending them in
parallel; the in-flight counts live in `IFailureCounts` with the failures,
so with several workers a parallel burst is counted as one (issue 16 #9).
A success on the same (address, account) releases attempts that are
waiting for that reason.

Delays are reactor timers (callLater), never a blocked thread.  The counts
have a bounded size: the least recently used entries go first, but never
an active refusal; a table full of refusals fails closed (a key it cannot
record is refused).  With workers the counts are in a table shared by the
worker processes (xmail.workers.shared.SharedFailureCounts, keyed with a
secret made at each start so that nobody can pick names that collide).
IPv6 clients are counted per /64, the block one subscriber usually gets.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.credentials import IUsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from xmail.auth.interfaces import IFailureCounts, ILoginThrottle, LoginThrottled
from xmail.config import LimitSettings
from xmail.limits import client_key

MAX_ENTRIES = 50000  # per scope; ~150 bytes each
TRUST_SECONDS = 30 * 86400.0  # an address stays trusted for an account this long
MAX_KEY_CHARS = 320
FIRST_DELAY = 2.0  # seconds; doubles with every further failure
EVICTION_WINDOW = 16  # oldest keys a full scope looks at for one it may forget


@dataclass(frozen=True)
class ThrottlePolicy:
    failures_before_delay: int = 3
    max_delay: float = 60.0
    failures_before_refusal: int = 10
    refusal_seconds: float = 900.0
    ip_failures_before_delay: int = 10
    ip_failures_before_refusal: int = 50
    account_failures_before_delay: int = 20
    account_max_delay: float = 15.0

    @classmethod
    def from_limits(cls, limits: LimitSettings) -> ThrottlePolicy:
        return cls(
            failures_before_delay=limits.login_failures_before_delay,
            max_delay=float(limits.login_max_delay),
            failures_before_refusal=limits.login_failures_before_refusal,
            refusal_seconds=float(limits.login_refusal_seconds),
            ip_failures_before_delay=limits.ip_login_failures_before_delay,
            ip_failures_before_refusal=limits.ip_login_failures_before_refusal,
            account_failures_before_delay=limits.account_login_failures_before_delay,
            account_max_delay=float(limits.account_login_max_delay),
        )


def backoff(failures: int, threshold: int, cap: float) -> float:
    """0 below threshold, then 2 s, 4 s, 8 s ... at most cap.  A threshold
    of 0 switches the delay off."""
    if threshold <= 0 or failures < threshold:
        return 0.0
    return min(cap, FIRST_DELAY * 2.0 ** min(failures - threshold, 32))


def account_key(name: bytes | str) -> str:
    if isinstance(name, bytes):
        name = name.decode("utf-8", "backslashreplace")
    return name.strip().lower()[:MAX_KEY_CHARS]


class _Count:
    __slots__ = ("failures", "last", "refused_until")

    def __init__(self) -> None:
        self.failures = 0
        self.last = 0.0
        self.refused_until = 0.0


@implementer(IFailureCounts)
class MemoryFailureCounts:
    """IFailureCounts in this process's memory, at most `max_entries` keys
    per scope; a key is forgotten `forget_after` seconds after its last
    failure (and not before its refusal ends).

    A full scope makes room by forgetting its least recently used key, but
    never one with an active refusal (issue 16 #9: evicting refusals let an
    attacker wipe his own record).  When the EVICTION_WINDOW oldest keys are
    all refused, the scope fails closed: a key it cannot record is answered
    as refused until the earliest of those refusals ends."""

    def __init__(self, forget_after: float, max_entries: int = MAX_ENTRIES):
        self.forget_after = forget_after
        self.max_entries = max_entries
        self._scopes: dict[str, OrderedDict[str, _Count]] = {}
        self._trusted: OrderedDict[str, float] = OrderedDict()  # pair -> until
        self._flights: dict[tuple[str, str], int] = {}  # attempts being checked

    def trust(self, pair: str, until: float, now: float) -> None:
        self._trusted[pair] = until
        self._trusted.move_to_end(pair)
        while len(self._trusted) > self.max_entries:
            self._trusted.popitem(last=False)

    def trusted(self, pair: str, now: float) -> bool:
        until = self._trusted.get(pair)
        if until is None:
            return False
        if now >= until:
            del self._trusted[pair]
            return False
        return True

    def __len__(self) -> int:
        return sum(len(table) for table in self._scopes.values())

    def _table(self, scope: str) -> OrderedDict[str, _Count]:
        table = self._scopes.get(scope)
        if table is None:
            table = self._scopes[scope] = OrderedDict()
        return table

    def _live(self, scope: str, key: str, now: float) -> _Count | None:
        table = self._table(scope)
        count = table.get(key)
        if count is not None and now >= max(count.last + self.forget_after, count.refused_until):
            del table[key]
            return None
        return count

    def _make_room(self, table: OrderedDict[str, _Count], now: float) -> float:
        """Forget keys until one more fits: 0.0, or (full of active
        refusals) the time the earliest of them ends."""
        if len(table) < self.max_entries:
            return 0.0
        earliest = 0.0
        for key in list(itertools.islice(table, EVICTION_WINDOW)):
            count = table[key]
            if count.refused_until <= now:
                del table[key]
                if len(table) < self.max_entries:
                    return 0.0
            elif not earliest or count.refused_until < earliest:
                earliest = count.refused_until
        if len(table) < self.max_entries:
            return 0.0
        return earliest

    def get(self, scope: str, key: str, now: float) -> tuple[int, float]:
        count = self._live(scope, key, now)
        if count is None:
            # Fail closed: a key the full table could not record is refused.
            return 0, self._make_room(self._table(scope), now)
        return count.failures, count.refused_until

    def add_failure(self, scope: str, key: str, now: float) -> int:
        table = self._table(scope)
        count = self._live(scope, key, now)
        if count is None:
            if self._make_room(table, now):
                return 1  # not recorded: get() refuses the key meanwhile
            count = table[key] = _Count()
        else:
            table.move_to_end(key)
        count.failures += 1
        count.last = now
        return count.failures

    def flight(self, scope: str, key: str, delta: int, now: float) -> int:
        slot = (scope, key)
        value = self._flights.get(slot, 0) + delta
        if value > 0:
            self._flights[slot] = value
        else:
            self._flights.pop(slot, None)
        return max(value, 0)

    def refuse(self, scope: str, key: str, until: float) -> None:
        count = self._table(scope).get(key)
        if count is not None:
            count.refused_until = max(count.refused_until, until)

    def reset(self, scope: str, key: str) -> None:
        self._table(scope).pop(key, None)


@dataclass(eq=False)
class Attempt:
    """One login attempt between admit() and finished()."""

    ip: str | None  # client_key(), None when the protocol gave no address
    account: str
    trusted: bool
    scopes: list[tuple[str, str]] = field(default_factory=list)  # failures count here
    flights: list[tuple[str, str]] = field(default_factory=list)  # counted as in flight
    done: bool = False


class _Waiter:
    __slots__ = ("deferred", "call", "attempt")

    def __init__(self, deferred: defer.Deferred[Attempt], call: Any, attempt: Attempt):
        self.deferred = deferred
        self.call = call
        self.attempt = attempt


@implementer(ILoginThrottle)
class LoginThrottle:
    _log = Logger()

    def __init__(self, clock: Any, policy: ThrottlePolicy | None = None,
                 counts: IFailureCounts | None = None, max_entries: int = MAX_ENTRIES):
        self.clock = clock
        self.policy = policy or ThrottlePolicy()
        self.counts = counts if counts is not None else MemoryFailureCounts(
            self.policy.refusal_seconds, max_entries)
        self.max_entries = max_entries
        self._waiting: dict[str, list[_Waiter]] = {}  # pair key -> attempts waiting
        self.refused = 0  # attempts refused outright (stats, tests)
        self.delayed = 0  # attempts answered late

    # -- ILoginThrottle --------------------------------------------------------
    def admit(self, client_ip: str | None, account: str) -> defer.Deferred[Attempt]:
        now = self.clock.seconds()
        policy = self.policy
        ip = client_key(client_ip) if client_ip else None
        account = account_key(account)
        attempt = Attempt(ip, account, trusted=ip is not None and self._is_trusted(ip, account, now))
        delays = []
        if ip is not None:
            pair = _pair(ip, account)
            failures, refused_until = self._prior(attempt, "pair", pair, now)
            if refused_until > now or _reached(failures, policy.failures_before_refusal):
                return self._refuse(attempt, refused_until - now, "account from this address")
            delays.append(backoff(failures, policy.failures_before_delay, policy.max_delay))
            attempt.scopes.append(("pair", pair))
            if not attempt.trusted:
                failures, refused_until = self._prior(attempt, "ip", ip, now)
                if refused_until > now or _reached(failures, policy.ip_failures_before_refusal):
                    return self._refuse(attempt, refused_until - now, "address")
                delays.append(backoff(failures, policy.ip_failures_before_delay, policy.max_delay))
                attempt.scopes.append(("ip", ip))
        if not attempt.trusted:
            failures, refused_until = self._prior(attempt, "account", account, now)
            if refused_until > now:  # only a full table refuses here (fail closed)
                return self._refuse(attempt, refused_until - now, "account")
            delays.append(backoff(failures, policy.account_failures_before_delay,
                                  min(policy.account_max_delay, policy.max_delay)))
            attempt.scopes.append(("account", account))
        delay = max(delays, default=0.0)
        if delay <= 0:
            return defer.succeed(attempt)
        self.delayed += 1
        return self._wait(attempt, delay)

    def finished(self, ticket: Attempt, outcome: str) -> None:
        if ticket.done:
            return
        ticket.done = True
        now = self.clock.seconds()
        self._land(ticket, now)
        policy = self.policy
        if outcome == "ok":
            if ticket.ip is not None:
                pair = _pair(ticket.ip, ticket.account)
                self.counts.reset("pair", pair)
                self._trust(ticket.ip, ticket.account, now)
                self._release(pair)
        elif outcome == "fail":
            for scope, key in ticket.scopes:
                count = self.counts.add_failure(scope, key, now)
                limit = {"pair": policy.failures_before_refusal,
                         "ip": policy.ip_failures_before_refusal}.get(scope, 0)
                if limit and count >= limit:
                    self.counts.refuse(scope, key, now + policy.refusal_seconds)
                if limit and count == limit:
                    self._log.warn(
                        "login refused for {seconds:.0f} s: {count} failures for {scope} {key}",
                        seconds=policy.refusal_seconds, count=count, scope=scope, key=key)

    # -- helpers ----------------------------------------------------------------
    def _prior(self, attempt: Attempt, scope: str, key: str, now: float) -> tuple[int, float]:
        """(failures, refused until) that decide this attempt.  For the pair
        and the account, attempts still being checked count as failures, in
        every worker (issue 16 #9): the attempt is counted in flight first,
        in one atomic step, and sees only those before it."""
        failures, refused_until = self.counts.get(scope, key, now)
        if scope == "ip":
            # Logins still being verified are not failures: an office behind
            # one NAT address opens hundreds at 9 am.  Parallel spraying is
            # bounded by the verifier pool's queue and counted as it fails.
            return failures, refused_until
        before = self.counts.flight(scope, key, 1, now) - 1
        attempt.flights.append((scope, key))
        return failures + before, refused_until

    def _land(self, attempt: Attempt, now: float) -> None:
        """The attempt is no longer in flight."""
        flights, attempt.flights = attempt.flights, []
        for scope, key in flights:
            self.counts.flight(scope, key, -1, now)

    def _refuse(self, attempt: Attempt, retry_after: float, what: str) -> defer.Deferred[Attempt]:
        self._land(attempt, self.clock.seconds())
        attempt.done = True
        self.refused += 1
        retry_after = max(retry_after, 1.0)
        return defer.fail(LoginThrottled(f"too many failed logins for this {what}; "
                                         f"try again in {retry_after:.0f} s", retry_after))

    def _wait(self, attempt: Attempt, delay: float) -> defer.Deferred[Attempt]:
        def cancel(d: defer.Deferred[Attempt]) -> None:
            if waiter.call.active():
                waiter.call.cancel()
            self._forget_waiter(waiter)
            self.finished(attempt, "error")

        d: defer.Deferred[Attempt] = defer.Deferred(cancel)
        waiter = _Waiter(d, None, attempt)
        waiter.call = self.clock.callLater(delay, self._wake, waiter)
        if attempt.ip is not None:
            self._waiting.setdefault(_pair(attempt.ip, attempt.account), []).append(waiter)
        return d

    def _wake(self, waiter: _Waiter) -> None:
        self._forget_waiter(waiter)
        waiter.deferred.callback(waiter.attempt)

    def _forget_waiter(self, waiter: _Waiter) -> None:
        attempt = waiter.attempt
        if attempt.ip is None:
            return
        pair = _pair(attempt.ip, attempt.account)
        waiting = self._waiting.get(pair)
        if waiting and waiter in waiting:
            waiting.remove(waiter)
            if not waiting:
                del self._waiting[pair]

    def _release(self, pair: str) -> None:
        """The owner proved the password from this address: attempts that
        wait because of the pair's (now reset) count go ahead."""
        for waiter in self._waiting.pop(pair, []):
            if waiter.call.active():
                waiter.call.cancel()
                waiter.deferred.callback(waiter.attempt)

    def _is_trusted(self, ip: str, account: str, now: float) -> bool:
        return self.counts.trusted(_pair(ip, account), now)

    def _trust(self, ip: str, account: str, now: float) -> None:
        # In the counts, so that with several workers every one trusts it.
        self.counts.trust(_pair(ip, account), now + TRUST_SECONDS, now)


def _pair(ip: str, account: str) -> str:
    return f"{ip} {account}"


def _reached(failures: int, limit: int) -> bool:
    return limit > 0 and failures >= limit


@implementer(ICredentialsChecker)
class ThrottledChecker:
    """The portal's checker: asks the throttle, then the wrapped checker.

    The account is counted under its canonical address when the directory
    knows the name (so aliases and alias domains share one count), else
    under the name as given.
    """

    credentialInterfaces = (IUsernamePassword,)

    def __init__(self, checker: ICredentialsChecker, throttle: ILoginThrottle,
                 canonical: Any = None):
        self.checker = checker
        self.throttle = throttle
        self._canonical = canonical

    def _account(self, username: bytes | str) -> str:
        name = account_key(username)
        if self._canonical is not None and name:
            try:
                return self._canonical(name) or name
            except Exception:
                return name
        return name

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[Any]:
        client_ip = getattr(credentials, "client_ip", None) or None
        d = self.throttle.admit(client_ip, self._account(credentials.username))
        d.addCallback(self._check, credentials)
        return d

    def _check(self, attempt: Attempt, credentials: Any) -> defer.Deferred[Any]:
        d = defer.maybeDeferred(self.checker.requestAvatarId, credentials)

        def ok(avatar_id: Any) -> Any:
            self.throttle.finished(attempt, "ok")
            return avatar_id

        def failed(failure: Any) -> Any:
            # A disabled account counts like a wrong password (issue 16
            # #10): otherwise the throttle's answers would tell them apart.
            if failure.check(UnauthorizedLogin):  # AccountDisabled included
                outcome = "fail"
            else:
                outcome = "error"
            self.throttle.finished(attempt, outcome)
            return failure

        d.addCallbacks(ok, failed)
        return d
