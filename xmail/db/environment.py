# -*- test-case-name: tests.db.test_environment -*-
"""The LMDB environment shared by the store, the directory and the queue.

Ground floor (issue 14): imports no other xmail package.  What a caller
wants to know of each commit (the metrics of xmail.ops) it passes in as
`on_commit`.

One `IndexEnvironment` per process, opened after twistd has forked
(`startService`).  LMDB write transactions are bound to the thread that began
them and only one may be open per environment at a time, so every write made
by the daemon runs on one dedicated writer thread.  Jobs queued while a commit
is in progress are run together in the next transaction ("group commit"): one
fsync of the LMDB data file acknowledges many deliveries.  Each job runs in a
nested transaction so that one failing job does not undo its neighbours.

What a commit promises (docs/decisions.md, "Durability of index writes"):
the environment runs with LMDB's MDB_NOMETASYNC, so a commit fsyncs its data
pages once and leaves the meta page to the next sync -- LMDB keeps the
database consistent either way, a system crash can only undo the newest
commits.  A durable job (`write(fn)`, the default: a new message, a user) fires
only after a `sync()` that makes the meta page durable too -- run on a
sync thread, one for all batches committed meanwhile, while the writer
goes on with the next commit; a batch of
`write(fn, durable=False)` jobs only (flag changes, like Dovecot's
mail_fsync=optimized) fires right after its commit.

Short read transactions may run on any thread, the reactor's included.
`xmailctl` opens the same environment from another process at the same time;
LMDB's own lock file serialises writers across processes.
"""

from __future__ import annotations

import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import lmdb
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

T = TypeVar("T")

# Sparse: the file grows with the data, not the map.  Large enough that the
# map practically never grows at run time, since growing it (set_mapsize)
# is only safe while no transaction of this process is open.
_INITIAL_MAP_SIZE = 1 << 36
_MAX_DBS = 64
_MAX_BATCH = 512  # jobs in one group commit
_MAX_QUEUE = 20000  # pending jobs before writes are refused (back-pressure)


def keys_with_prefix(txn: lmdb.Transaction, db: Any, prefix: bytes) -> Iterator[bytes]:
    """The keys of `db` that start with `prefix`, in order (one cursor walk
    from the first such key; the tables keyed "scope NUL name" use it)."""
    cursor = txn.cursor(db=db)
    if cursor.set_range(prefix):
        for key in cursor.iternext(values=False):
            if not key.startswith(prefix):
                break
            yield key


def next_batch(jobs: Any, limit: int) -> tuple[list[Any], bool]:
    """Wait for a job, then take what else is queued, up to limit: the
    batch a worker thread handles together.  A None job means stop: ->
    (the jobs before it, True)."""
    job = jobs.get()
    if job is None:
        return [], True
    batch = [job]
    while len(batch) < limit:
        try:
            job = jobs.get_nowait()
        except queue.Empty:
            break
        if job is None:
            return batch, True
        batch.append(job)
    return batch, False


def fire_outcomes(outcomes: Any) -> None:
    """On the reactor thread: fire each (deferred, ok, result or Failure)
    that a worker thread collected -- one callFromThread for a batch."""
    for d, ok, value in outcomes:
        if ok:
            d.callback(value)
        else:
            d.errback(value)


# A queued write: fn(txn), the Deferred to fire, whether it must be durable.
WriteJob = tuple[Callable[[lmdb.Transaction], Any], Deferred[Any], bool]


class IndexBusy(Exception):
    """The writer queue is full; the caller should answer with a temporary error."""


class IndexEnvironment:
    """An LMDB environment with named databases and a group-commit writer."""

    _log = Logger()

    def __init__(self, path: str, *, map_size: int = _INITIAL_MAP_SIZE, reactor: Any = None,
                 on_commit: Callable[[float], None] | None = None):
        """on_commit(seconds): called on the writer thread after each group
        commit with its duration (the daemon passes metrics.index_write)."""
        self.path = path
        self._on_commit = on_commit
        self._map_size = map_size
        self._reactor = reactor
        self._env: lmdb.Environment | None = None
        self._dbs: dict[bytes, Any] = {}
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=_MAX_QUEUE)
        self._thread: threading.Thread | None = None
        # Durable batches wait for sync() on a thread of their own, so the
        # writer's next commit (a STORE's, say) does not queue behind it.
        self._syncs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._sync_thread: threading.Thread | None = None
        self._lock = threading.Lock()  # guards db creation and resizing
        self.commits = 0  # group commits made by the writer thread (metrics, tests)
        # id(txn) -> callables to run once that transaction is durable
        # (after_commit); only the thread running the transaction touches
        # its entry.
        self._after: dict[int, list[Callable[[], None]]] = {}

    # -- lifecycle ---------------------------------------------------------
    def open(self) -> None:
        os.makedirs(self.path, mode=0o700, exist_ok=True)
        self._env = lmdb.open(
            self.path,
            map_size=self._map_size,
            max_dbs=_MAX_DBS,
            mode=0o600,
            max_readers=512,
            sync=True,
            # One fsync per commit; durable batches add sync() (module doc).
            metasync=False,
            # Readers on the reactor thread and the writer thread share the env.
            lock=True,
        )
        # Clear stale reader slots left by a process that died (kill -9).
        self._env.reader_check()
        info = self._env.info()
        self._map_size = max(self._map_size, info["map_size"])

    def start_writer(self) -> None:
        """Start the writer thread (daemon only; the CLI writes synchronously)."""
        if self._thread is None:
            if self._reactor is None:
                from twisted.internet import reactor

                self._reactor = reactor
            self._thread = threading.Thread(target=self._run, name="xmail-index-writer", daemon=True)
            self._sync_thread = threading.Thread(target=self._run_syncs, name="xmail-index-sync", daemon=True)
            self._sync_thread.start()
            self._thread.start()

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join()
            self._thread = None
        if self._sync_thread is not None:
            self._syncs.put(None)  # after every durable batch the writer handed over
            self._sync_thread.join()
            self._sync_thread = None
        if self._env is not None:
            self._env.close()
            self._env = None
            self._dbs.clear()

    @property
    def env(self) -> lmdb.Environment:
        if self._env is None:
            raise RuntimeError("index environment is not open")
        return self._env

    def db(self, name: str, *, dupsort: bool = False) -> Any:
        """The handle of a named database, created on first use.

        Get every handle in a constructor, before any transaction of yours is
        open: LMDB handles created after a transaction began are invalid in
        that transaction ("mdb_cursor_open: Invalid argument").
        """
        key = name.encode()
        handle = self._dbs.get(key)
        if handle is None:
            with self._lock:
                handle = self._dbs.get(key)
                if handle is None:
                    handle = self.env.open_db(key, dupsort=dupsort, create=True)
                    self._dbs[key] = handle
        return handle

    # -- reads ---------------------------------------------------------------
    @contextmanager
    def read(self) -> Iterator[lmdb.Transaction]:
        """A short read transaction; keep it short, it pins old pages."""
        txn = self.env.begin(buffers=False)
        try:
            yield txn
        finally:
            txn.abort()

    # -- writes --------------------------------------------------------------
    def after_commit(self, txn: lmdb.Transaction, fn: Callable[[], None]) -> None:
        """Run fn once txn (a write job's transaction) is committed (durable once synced,
        see write); never if it aborts.  fn runs on the thread that committed
        (the writer thread in the daemon), so it must be quick and
        thread-safe: hand work to a queue, do not do it.  For side effects
        outside LMDB that must not run for an aborted transaction (the
        full-text index, xmail.store.fulltext)."""
        self._after.setdefault(id(txn), []).append(fn)

    def _take_after(self, txn: lmdb.Transaction) -> list[Callable[[], None]]:
        return self._after.pop(id(txn), [])

    def _run_after(self, callbacks: list[Callable[[], None]]) -> None:
        for fn in callbacks:
            try:
                fn()
            except Exception:
                self._log.failure("after-commit callback failed")

    def write(self, fn: Callable[[lmdb.Transaction], T], *, durable: bool = True) -> Deferred[T]:
        """Run fn(txn) on the writer thread; fires with its result after commit.

        Must be called from the reactor thread.  The Deferred fires on the
        reactor thread once the transaction is committed (visible to every
        reader) and, when durable, once it survives a system crash too.
        durable=False is for changes a crash may undo without losing mail
        (flags): the commit does not wait for the meta page's fsync.
        """
        if self._thread is None:
            self.start_writer()
        d: Deferred[T] = Deferred()
        try:
            self._queue.put_nowait((fn, d, durable))
        except queue.Full:
            d.errback(Failure(IndexBusy("index writer queue is full")))
        return d

    def write_from_thread(self, fn: Callable[[lmdb.Transaction], T], d: Deferred[T], *,
                          durable: bool = True) -> None:
        """`write` for a thread other than the reactor's (the append
        thread hands a new message's record straight to the writer, saving
        a hop through the reactor); d fires on the reactor thread."""
        try:
            self._queue.put_nowait((fn, d, durable))
        except queue.Full:
            self._reactor.callFromThread(d.errback, Failure(IndexBusy("index writer queue is full")))

    def sync(self) -> None:
        """Make every commit so far durable (the meta page too); any thread."""
        self.env.sync(True)

    def write_sync(self, fn: Callable[[lmdb.Transaction], T], *, durable: bool = True) -> T:
        """Run fn(txn) in a transaction of the calling thread and commit.

        For `xmailctl`, tests and worker threads that are not the reactor.
        Never call this on the reactor thread of a running daemon.
        """
        while True:
            txn = self.env.begin(write=True)
            try:
                result = fn(txn)
                txn.commit()
                if durable:
                    self.sync()
            except lmdb.MapFullError:
                txn.abort()
                self._take_after(txn)
                self._grow()
                continue
            except BaseException:
                txn.abort()
                self._take_after(txn)
                raise
            self._run_after(self._take_after(txn))
            return result

    def _grow(self) -> None:
        with self._lock:
            self._map_size *= 2
            self.env.set_mapsize(self._map_size)
            self._log.info("index map grown to {size} bytes", size=self._map_size)

    def _run(self) -> None:
        stop = False
        while not stop:
            batch, stop = next_batch(self._queue, _MAX_BATCH)
            if batch:
                self._commit_batch(batch)

    def _commit_batch(self, batch: list[WriteJob]) -> None:
        started = time.monotonic()
        while True:
            outcomes: list[tuple[bool, Any]] = []
            try:
                parent = self.env.begin(write=True)
            except Exception:
                failure = Failure()
                self._reactor.callFromThread(fire_outcomes, [(d, False, failure) for _fn, d, _s in batch])
                return
            after: list[Callable[[], None]] = []
            try:
                for fn, _d, _durable in batch:
                    child = self.env.begin(write=True, parent=parent)
                    try:
                        result = fn(child)
                        child.commit()
                        outcomes.append((True, result))
                        after.extend(self._take_after(child))
                    except lmdb.MapFullError:
                        child.abort()
                        self._take_after(child)
                        raise
                    except Exception:
                        child.abort()
                        self._take_after(child)
                        outcomes.append((False, Failure()))
                parent.commit()
                self.commits += 1
                self._run_after(after)
                if self._on_commit is not None:
                    self._on_commit(time.monotonic() - started)
            except lmdb.MapFullError:
                parent.abort()
                self._grow()
                continue
            except Exception:
                parent.abort()
                failure = Failure()
                self._log.failure("index commit failed", failure)
                self._reactor.callFromThread(fire_outcomes, [(d, False, failure) for _fn, d, _s in batch])
                return
            # One hop to the reactor for the whole batch: a wake-up each
            # costs more than the job itself.  Durable jobs first pass the
            # sync thread (failed ones too: their neighbours' order holds).
            ready = [(d, ok, value) for (ok, value), (_fn, d, _s) in zip(outcomes, batch, strict=True)]
            if any(durable for _fn, _d, durable in batch):
                self._syncs.put([r for r, (_fn, _d, durable) in zip(ready, batch, strict=True) if durable])
                ready = [r for r, (_fn, _d, durable) in zip(ready, batch, strict=True) if not durable]
            if ready:
                self._reactor.callFromThread(fire_outcomes, ready)
            return

    def _run_syncs(self) -> None:
        """One sync() for every durable batch committed meanwhile, then
        their Deferreds fire."""
        stop = False
        while not stop:
            groups, stop = next_batch(self._syncs, _MAX_BATCH)
            if not groups:
                continue
            outcomes = [outcome for group in groups for outcome in group]
            try:
                self.sync()
            except Exception:
                failure = Failure()
                self._log.failure("index sync failed", failure)
                outcomes = [(d, False, failure) for d, _ok, _value in outcomes]
            self._reactor.callFromThread(fire_outcomes, outcomes)
