# -*- test-case-name: tests.store.test_service_store, tests.store.test_delivery -*-
"""Where the store's work runs: the daemon's threads, or the caller's thread.

With a reactor (the daemon): new messages are written and fsynced in batches
on one append thread, other file work runs on a bounded thread pool, index
writes on the environment's group-commit writer thread, and every Deferred
fires on the reactor thread.  Without one (`xmailctl`, tests): the
same operations run synchronously in the calling thread and hand back
Deferreds that have already fired, so one code path serves both.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from twisted.internet import defer
from twisted.internet.threads import deferToThreadPool
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool

from xmail.db.environment import IndexBusy, fire_outcomes, next_batch
from xmail.store import maildir
from xmail.store.interfaces import StoreBusy

T = TypeVar("T")

FILE_THREADS = 8  # concurrent fsyncs keep the disk queue full
MAX_PENDING_FILE_JOBS = 2000
APPEND_THREADS = 1  # one batch at a time: fewer wake-ups and GIL hand-offs than parallel fsyncs
MAX_APPEND_BATCH = 128  # new messages made durable together on the append thread

# What `durable` runs: -> (result, a file still to be made durable or None).
DurableJob = Callable[[], tuple[T, "maildir.PendingFile | None"]]
# What `durable` runs next, once the file is durable: result -> an index
# write job whose result the Deferred fires with, or None (result is final).
IndexStep = Callable[[Any], "Callable[[Any], Any] | None"]


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

    def write(self, fn: Callable[[Any], T], *, durable: bool = True) -> defer.Deferred[T]:
        return defer.maybeDeferred(self.env.write_sync, fn, durable=durable)

    def durable(self, fn: DurableJob[Any], syncer: maildir.DirSyncer, then: IndexStep | None = None
                ) -> defer.Deferred[Any]:
        try:
            result, pending = fn()
            if pending is not None:
                error = maildir.finish_files([pending], syncer)[0]
                if error is not None:
                    raise error
            job = then(result) if then is not None else None
            if job is not None:
                result = self.env.write_sync(job)
        except BaseException:
            return defer.fail()
        return defer.succeed(result)

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
        self._appends: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._append_threads: list[threading.Thread] = []
        self._pending = 0
        self._shutdown_trigger: Any = None

    def seconds(self) -> float:
        return self._clock()

    @property
    def pending(self) -> int:
        """File jobs queued or running (refused beyond MAX_PENDING_FILE_JOBS)."""
        return self._pending

    def start(self) -> None:
        if self._pool is None:
            self._pool = ThreadPool(minthreads=0, maxthreads=self._threads, name="xmail-store-io")
            self._pool.start()
            self._append_threads = [
                threading.Thread(target=self._run_appends, name=f"xmail-store-append-{i}", daemon=True)
                for i in range(APPEND_THREADS)]
            for thread in self._append_threads:
                thread.start()
            self._shutdown_trigger = self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.stop()
        threads, self._append_threads = self._append_threads, []
        for _thread in threads:
            self._appends.put(None)  # after every job already queued
        for thread in threads:
            thread.join()
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

    def durable(self, fn: DurableJob[Any], syncer: maildir.DirSyncer, then: IndexStep | None = None
                ) -> defer.Deferred[Any]:
        """Run fn on the append thread, then make its file durable and
        visible together with the others of the batch (`finish_files`);
        fires on the reactor thread with fn's result once its file is.
        With `then`: then(result) on the append thread gives the index job
        that goes straight to the writer (no hop through the reactor, which
        is busy with other sessions under load); fires with its result once
        committed.

        One thread for all new messages rather than one pool thread each:
        a batch costs one wake-up, one directory fsync per folder and one
        hop back to the reactor, where the pool paid a thread hand-off and
        GIL contention per message (bench/RESULTS.md, "Workers").
        """
        if self._pool is None:
            self.start()
        if self._pending >= MAX_PENDING_FILE_JOBS:
            return defer.fail(StoreBusy("store file queue is full"))
        if then is not None:
            self.env.start_writer()  # the append thread queues to it
        self._pending += 1
        d: defer.Deferred[Any] = defer.Deferred()
        self._appends.put((fn, syncer, d, then))

        def done(result: Any) -> Any:
            self._pending -= 1
            return result

        d.addBoth(done)
        d.addErrback(_busy)
        return d

    def _run_appends(self) -> None:
        stop = False
        while not stop:
            batch, stop = next_batch(self._appends, MAX_APPEND_BATCH)
            if batch:
                self._append_batch(batch)

    def _append_batch(self, batch: list[Any]) -> None:
        outcomes: list[list[Any]] = []  # [deferred, ok, result or Failure]
        pending: dict[Any, list[tuple[maildir.PendingFile, list[Any]]]] = {}
        for fn, syncer, d, then in batch:
            try:
                result, file = fn()
            except BaseException:
                outcomes.append([d, False, Failure()])
                continue
            outcome = [d, True, result, then]
            outcomes.append(outcome)
            if file is not None:
                pending.setdefault(syncer, []).append((file, outcome))
        for syncer, files in pending.items():
            errors = maildir.finish_files([file for file, _outcome in files], syncer)
            for error, (_file, outcome) in zip(errors, files, strict=True):
                if error is not None:
                    outcome[1:] = [False, Failure(error), None]
        ready = []
        for outcome in outcomes:
            d, ok, value, then = (outcome + [None])[:4]
            if ok and then is not None:
                try:
                    job = then(value)
                except BaseException:
                    ready.append((d, False, Failure()))
                    continue
                if job is not None:
                    self.env.write_from_thread(job, d)
                    continue
            ready.append((d, ok, value))
        if ready:
            self.reactor.callFromThread(fire_outcomes, ready)

    def write(self, fn: Callable[[Any], T], *, durable: bool = True) -> defer.Deferred[T]:
        """fn(txn) on the index writer; durable=False: a system crash may
        undo it (flag changes: IndexEnvironment, docs/decisions.md)."""
        d = self.env.write(fn, durable=durable)
        d.addErrback(_busy)
        return d

    def call_later(self, fn: Callable[..., Any], *args: Any) -> None:
        self.reactor.callLater(0, fn, *args)
