# -*- test-case-name: tests.store.test_mailstore -*-
"""Where the store's work runs: the daemon's threads, or the caller's thread.

With a reactor (the daemon): file writes and fsyncs run on a bounded thread
pool, index writes on the environment's group-commit writer thread, and every
Deferred fires on the reactor thread.  Without one (`xmailctl`, tests): the
same operations run synchronously in the calling thread and hand back
Deferreds that have already fired, so one code path serves both.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from xmail.store.environment import IndexBusy
from xmail.store.interfaces import StoreBusy

T = TypeVar("T")

FILE_THREADS = 8  # concurrent fsyncs keep the disk queue full
MAX_PENDING_FILE_JOBS = 2000


def _busy(failure: Any) -> Any:
    failure.trap(IndexBusy)
    raise StoreBusy(str(failure.value))


class SyncRunner:
    """Everything in the calling thread; Deferreds come back fired."""

    threaded = False

    def __init__(self, env: Any, clock: Callable[[], float] | None = None):
        self.env = env
        self._clock = clock or time.time

    def seconds(self) -> float:
        return self._clock()

    def io(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        return defer.maybeDeferred(fn, *args)

    def write(self, fn: Callable[[Any], T]) -> defer.Deferred[T]:
        return defer.maybeDeferred(self.env.write_sync, fn)

    def call_later(self, fn: Callable[..., Any], *args: Any) -> None:
        fn(*args)

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass


class ThreadedRunner:
    """File work on a bounded pool, index writes on the group-commit writer."""

    threaded = True

    def __init__(self, env: Any, reactor: Any, clock: Callable[[], float] | None = None,
                 threads: int = FILE_THREADS):
        self.env = env
        self.reactor = reactor
        self._clock = clock or reactor.seconds
        self._threads = threads
        self._pool: ThreadPool | None = None
        self._pending = 0
        self._shutdown_trigger: Any = None

    def seconds(self) -> float:
        return self._clock()

    def start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPool(minthreads=0, maxthreads=self._threads, name="xmail-store-io")
            self._pool.start()
            self._shutdown_trigger = self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
        if self._shutdown_trigger is not None:
            try:
                self.reactor.removeSystemEventTrigger(self._shutdown_trigger)
            except (ValueError, KeyError, TypeError):
                pass
            self._shutdown_trigger = None

    def io(self, fn: Callable[..., T], *args: Any) -> defer.Deferred[T]:
        if self._pool is None:
            self.start()
        if self._pending >= MAX_PENDING_FILE_JOBS:
            return defer.fail(StoreBusy("store file queue is full"))
        self._pending += 1
        d = deferToThreadPool(self.reactor, self._pool, fn, *args)

        def done(result: Any) -> Any:
            self._pending -= 1
            return result

        d.addBoth(done)
        return d

    def write(self, fn: Callable[[Any], T]) -> defer.Deferred[T]:
        d = self.env.write(fn)
        d.addErrback(_busy)
        return d

    def call_later(self, fn: Callable[..., Any], *args: Any) -> None:
        self.reactor.callLater(0, fn, *args)
