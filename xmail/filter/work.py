# -*- test-case-name: tests.filter.test_work -*-
"""The pipeline's own bounded thread pool.

CPU-heavy or blocking-library work of the stages -- DKIM hashing and RSA,
pyspf's evaluation (its DNS questions are answered by twisted.names on the
reactor, see xmail.filter.authcheck), reading a spool file -- runs here,
never on the reactor, and never more than THREADS at once: a burst of big
messages waits its turn instead of holding every message in memory at
once (issue 17: memory flat with 40 MB messages).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, Any, TypeVar

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

T = TypeVar("T")
THREADS = 2


class FilterWork:
    """Lazily started; stopped at reactor shutdown."""

    def __init__(self, reactor: Any, threads: int = THREADS):
        self.reactor = reactor
        self.threads = threads
        self._pool: ThreadPool | None = None

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> defer.Deferred[T]:
        if self._pool is None:
            self._pool = ThreadPool(minthreads=0, maxthreads=self.threads, name="xmail-filter")
            self._pool.start()
            self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        return deferToThreadPool(self.reactor, self._pool, fn, *args, **kwargs)

    def open(self, opener: Callable[[], IO[bytes]]) -> defer.Deferred[IO[bytes]]:
        """opener() on the pool -- or at once for a message held in memory
        (an opener with `in_memory` set, Transaction.open for a small
        message): no thread trip for bytes that are already here."""
        if getattr(opener, "in_memory", False):
            return defer.maybeDeferred(opener)
        return self.run(opener)

    def read(self, f: IO[bytes], size: int) -> defer.Deferred[bytes]:
        """f.read(size) on the pool, or at once from memory (exactly a
        BytesIO: what Transaction.open gives for a small message)."""
        if type(f) is io.BytesIO:
            return defer.succeed(f.read(size))
        return self.run(f.read, size)

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
