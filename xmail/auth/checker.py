# -*- test-case-name: tests.auth.test_portal -*-
"""The credentials checker shared by every protocol.

The login name may be the user's address, an alias, or the local part at an
alias domain (DESIGN.md "Addresses and login"); it is resolved through the
directory, a cheap LMDB read.  Password hashing is deliberately slow, so it
never runs on the reactor thread: `VerifierPool` runs it on as many threads as
there are cores behind a bounded queue, and a full queue answers
LoginUnavailable (a temporary failure) instead of piling up work.

Mail clients open 5-10 connections at once with the same password, so a
successful verification is remembered for CACHE_SECONDS, keyed by the address
and a keyed digest of the password.  A cache hit still re-reads the user: it
counts only while the stored hash is the one that was verified, so
`xmailctl user passwd` takes effect at once, from any process.  A disabled
account is checked before the cache and always costs a full verification,
so its right password answers no faster than a wrong one (issue 16 #10).

After a successful login with a legacy or weaker hash the new argon2id hash
is written through the index writer thread (`env.write`), never on the
reactor.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from twisted.cred import credentials as cred_credentials
from twisted.cred.checkers import ICredentialsChecker
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import implementer

from xmail.auth import passwords
from xmail.auth.interfaces import AccountDisabled, LoginUnavailable

CACHE_SECONDS = 60.0
CACHE_SIZE = 10000
MAX_NAME_BYTES = 320
QUEUE_PER_WORKER = 64  # pending verifications per worker before refusing
WORKER_IDLE_SECONDS = 30.0


class VerifierPool:
    """Threads for CPU-heavy work with a bounded queue.

    Workers start on demand (up to `workers`) and exit after
    WORKER_IDLE_SECONDS without work, so a stopped server leaves no threads
    behind and nothing needs an explicit shutdown.  Results are delivered on
    the reactor thread.
    """

    def __init__(self, reactor: Any, workers: int, max_pending: int):
        self._reactor = reactor
        self._workers = max(1, workers)
        self._max_pending = max(1, max_pending)
        self._jobs: deque[tuple[Callable[..., Any], tuple[Any, ...], defer.Deferred[Any]]] = deque()
        self._lock = threading.Condition()
        self._threads = 0
        self._idle = 0

    @property
    def pending(self) -> int:
        return len(self._jobs)

    def submit(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """fn(*args) on a worker; fails with LoginUnavailable when full."""
        d: defer.Deferred[Any] = defer.Deferred()
        with self._lock:
            if len(self._jobs) >= self._max_pending:
                d.errback(Failure(LoginUnavailable("too many logins being verified; try again later")))
                return d
            self._jobs.append((fn, args, d))
            if self._idle:
                self._lock.notify()
            elif self._threads < self._workers:
                self._threads += 1
                threading.Thread(target=self._work, name="xmail-verifier", daemon=True).start()
        return d

    def _work(self) -> None:
        while True:
            with self._lock:
                if not self._jobs:
                    self._idle += 1
                    self._lock.wait(WORKER_IDLE_SECONDS)
                    self._idle -= 1
                    if not self._jobs:
                        self._threads -= 1
                        return
                fn, args, d = self._jobs.popleft()
            try:
                result = fn(*args)
            except BaseException:
                self._reactor.callFromThread(d.errback, Failure())
            else:
                self._reactor.callFromThread(d.callback, result)


def _text(value: bytes | str, limit: int) -> str | None:
    """bytes or str -> str; None for non-UTF-8 or over-long input."""
    if isinstance(value, bytes):
        if len(value) > limit:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None
    if not isinstance(value, str) or len(value.encode("utf-8", "surrogatepass")) > limit:
        return None
    return value


@implementer(ICredentialsChecker)
class DirectoryChecker:
    """IUsernamePassword against the directory; the avatar id is the
    canonical address (str)."""

    credentialInterfaces = (cred_credentials.IUsernamePassword,)
    _log = Logger()

    def __init__(self, directory: Any, reactor: Any, *, workers: int | None = None,
                 max_pending: int | None = None, cache_seconds: float = CACHE_SECONDS,
                 cache_size: int = CACHE_SIZE, clock: Any = None):
        self.directory = directory
        self.reactor = reactor
        self.clock = clock or reactor  # seconds() for the login cache
        workers = workers or os.cpu_count() or 1
        self.pool = VerifierPool(reactor, workers, max_pending or workers * QUEUE_PER_WORKER)
        self.cache_seconds = cache_seconds
        self.cache_size = cache_size
        # (address, password digest) -> (stored hash that matched, expiry)
        self._cache: OrderedDict[tuple[str, bytes], tuple[str, float]] = OrderedDict()
        self._cache_key = os.urandom(32)
        self.rehashed = 0  # legacy hashes replaced since start (for tests and stats)

    def requestAvatarId(self, credentials: Any) -> defer.Deferred[str]:
        try:
            return self._check(credentials)
        except Exception:
            return defer.fail()

    def _check(self, credentials: Any) -> defer.Deferred[str]:
        name = _text(credentials.username, MAX_NAME_BYTES)
        password = _text(credentials.password, passwords.MAX_PASSWORD_BYTES)
        if name is None or password is None or not password:
            return defer.fail(UnauthorizedLogin("invalid credentials"))
        address = self.directory.resolve(name.strip())
        found = self.directory.credentials(address) if address else None
        if found is None or not found[1]:
            # Spend the time a real check takes, so that a wrong name cannot
            # be told from a wrong password by the clock.
            d = self.pool.submit(passwords.dummy_verify, password)
            d.addCallback(lambda _: self._fail())
            return d
        record, stored = found
        if not record.enabled:
            # Issue 16 #10: a disabled account never answers from the cache.
            # A cached right password would fail in 1 ms and a wrong one
            # after the full hash, which tells the two apart by the clock;
            # so every attempt on a disabled account costs one verification.
            d = self.pool.submit(passwords.verify, password, stored)
            d.addCallback(self._disabled, address)
            return d
        key = (address, hashlib.blake2b(password.encode("utf-8"), key=self._cache_key).digest())
        cached = self._cache.get(key)
        if cached is not None:
            cached_hash, expiry = cached
            if cached_hash == stored and self.clock.seconds() < expiry:
                self._cache.move_to_end(key)
                return self._verified(record, address)
            del self._cache[key]
        d = self.pool.submit(passwords.verify, password, stored)
        d.addCallback(self._checked, record, address, stored, key)
        return d

    def _checked(self, result: passwords.Verification, record: Any, address: str, stored: str,
                 key: tuple[str, bytes]) -> defer.Deferred[str]:
        if not result.ok:
            return self._fail()
        self._cache[key] = (stored, self.clock.seconds() + self.cache_seconds)
        if result.new_hash is not None:
            self._rehash(address, stored, result.new_hash, key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        # Re-read: the user may have been disabled while the hash ran.
        current = self.directory.user(address)
        return self._verified(current or record, address)

    def _disabled(self, result: passwords.Verification, address: str) -> defer.Deferred[str]:
        """After the full verification of a disabled account's password:
        AccountDisabled only for the right one (the audit log says
        "disabled"); the client cannot tell the two apart."""
        if not result.ok:
            return self._fail()
        return defer.fail(AccountDisabled(f"account {address} is disabled"))

    def _verified(self, record: Any, address: str) -> defer.Deferred[str]:
        if not record.enabled:
            return defer.fail(AccountDisabled(f"account {address} is disabled"))
        return defer.succeed(address)

    def _fail(self) -> defer.Deferred[str]:
        return defer.fail(UnauthorizedLogin("invalid credentials"))

    def _rehash(self, address: str, old_hash: str, new_hash: str, key: tuple[str, bytes]) -> None:
        env = self.directory.env

        def store(txn: Any) -> bool:
            return self.directory.replace_hash_txn(txn, address, old_hash, new_hash)

        def stored(replaced: bool) -> None:
            if replaced:
                self.rehashed += 1
                cached = self._cache.get(key)
                if cached is not None and cached[0] == old_hash:
                    self._cache[key] = (new_hash, cached[1])
                self._log.info("password hash of {address} upgraded to argon2id", address=address)

        d = env.write(store)
        d.addCallbacks(stored, lambda f: self._log.failure("rehash of {address} failed", f,
                                                           address=address))
