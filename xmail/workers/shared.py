# -*- test-case-name: tests.workers.test_shared -*-
"""Counters shared by the worker processes, in memory-mapped files.

The files live under data_dir/run/ and are created empty by the supervisor
each time it starts (`create_files`), so nothing survives a restart of the
whole server -- the same lifetime the per-process counters had.  Every
operation is a few microseconds on the reactor thread: a lookup in a
bounded table, under an flock for the tables several workers write.

- `SlotCounters`: one row of counters per worker, each worker writing only
  its own; a count is the sum over the rows.  For the connection caps: the
  supervisor zeroes a dead worker's row (the kernel closed its
  connections) before it starts the next one.  Keys are hashed into a
  fixed number of buckets; two keys sharing a bucket count together, which
  can only make a cap stricter, never looser.
- `SharedTable`: an open-addressing table of (key, count, last, until)
  records under an flock, least recently used record evicted when a probe
  window is full -- but never a record that holds an active refusal
  (count > 0, until in the future): a window full of them fails closed
  (issue 16 #9).  Login failure counts (and the logins being checked in
  every worker), the daily send counter and the IMAP \\Recent claims.

Keys are hashed with blake2b keyed by a secret that `create_files` makes at
each start (`TABLE_KEY`, 0600): all workers of one run agree on it, and
nobody outside can compute names that collide with a victim's records.
- `WORKER_LOAD`: a slot per worker (open connections, heartbeat), which
  xmail.workers.balance reads and writes; zeroed here like the rows above.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
import time
from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from xmail.auth.interfaces import IFailureCounts
from xmail.limits import ConnectionCounter, PeerConnections, UserConnections

BUCKETS = 1 << 16  # per worker row of SlotCounters
TABLE_RECORDS = 1 << 16  # SharedTable records (32 bytes each: 2 MB)
PROBE = 16  # records looked at per key
_COUNTER = struct.Struct("<I")
_RECORD = struct.Struct("<Qqdd")  # key hash, count, last, until

PEER_CONNECTIONS = "peer-connections.shm"
USER_CONNECTIONS = "user-connections.shm"
LOGIN_FAILURES = "login-failures.shm"
DAILY_SENDS = "daily-sends.shm"
RECENT_CLAIMS = "recent-claims.shm"
# One slot per worker: its open connections and a heartbeat (xmail.workers.balance).
WORKER_LOAD = "worker-load.shm"
LOAD_SLOT = struct.Struct("<qd")
# The per-start secret of key_hash (32 random bytes).
TABLE_KEY = "tables.key"


def key_hash(key: str, secret: bytes = b"") -> int:
    """A hash every process of one run agrees on (Python's hash() is salted
    per process), keyed with the run's secret; never 0, which marks a free
    record."""
    digest = hashlib.blake2b(key.encode("utf-8", "surrogateescape"), digest_size=8, key=secret).digest()
    return int.from_bytes(digest, "little") | 1


def table_key(run_dir: str) -> bytes:
    """The secret create_files made for this run."""
    with open(os.path.join(run_dir, TABLE_KEY), "rb") as f:
        secret = f.read()
    if len(secret) != 32:
        raise ValueError(f"{os.path.join(run_dir, TABLE_KEY)}: not a table key")
    return secret


def create_files(run_dir: str, workers: int) -> None:
    """Fresh, zeroed tables for a server of `workers` workers (supervisor)."""
    os.makedirs(run_dir, mode=0o700, exist_ok=True)
    sizes = {
        PEER_CONNECTIONS: workers * BUCKETS * _COUNTER.size,
        USER_CONNECTIONS: workers * BUCKETS * _COUNTER.size,
        LOGIN_FAILURES: TABLE_RECORDS * _RECORD.size,
        DAILY_SENDS: TABLE_RECORDS * _RECORD.size,
        RECENT_CLAIMS: TABLE_RECORDS * _RECORD.size,
        WORKER_LOAD: workers * LOAD_SLOT.size,
    }
    key_path = os.path.join(run_dir, TABLE_KEY)
    tmp = f"{key_path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, os.urandom(32))
    finally:
        os.close(fd)
    os.replace(tmp, key_path)  # before the tables: a reader never sees a new table with an old key
    for name, size in sizes.items():
        path = os.path.join(run_dir, name)
        tmp = f"{path}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        try:
            os.ftruncate(fd, size)  # sparse zeroes
        finally:
            os.close(fd)
        # Replaced, not truncated: a worker of a previous run still mapping
        # the old file cannot scribble on the new one.
        os.replace(tmp, path)


def map_file(path: str) -> tuple[int, mmap.mmap]:
    fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
    try:
        return fd, mmap.mmap(fd, os.fstat(fd).st_size)
    except BaseException:
        os.close(fd)
        raise


class SlotCounters:
    """Counters per (worker row, bucket); see the module docstring."""

    def __init__(self, path: str, row: int):
        self.path = path
        self.fd, self.map = map_file(path)
        self.rows = len(self.map) // (BUCKETS * _COUNTER.size)
        if not 0 <= row < self.rows:
            raise ValueError(f"worker row {row} outside the {self.rows} rows of {path}")
        self.row = row

    @staticmethod
    def bucket(key: str) -> int:
        return key_hash(key) % BUCKETS

    def _offset(self, row: int, bucket: int) -> int:
        return (row * BUCKETS + bucket) * _COUNTER.size

    def total(self, bucket: int) -> int:
        return sum(_COUNTER.unpack_from(self.map, self._offset(row, bucket))[0]
                   for row in range(self.rows))

    def add(self, bucket: int, delta: int) -> None:
        offset = self._offset(self.row, bucket)
        value = _COUNTER.unpack_from(self.map, offset)[0] + delta
        _COUNTER.pack_into(self.map, offset, max(0, value))

    def clear_row(self, row: int) -> None:
        """Forget a dead worker's counts (the supervisor, before a restart)."""
        start = row * BUCKETS * _COUNTER.size
        self.map[start:start + BUCKETS * _COUNTER.size] = bytes(BUCKETS * _COUNTER.size)

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


def clear_worker_row(run_dir: str, row: int) -> None:
    """A dead worker's counts: its connections are closed, and it is not a
    worker the others wait for (supervisor, before the restart)."""
    for name in (PEER_CONNECTIONS, USER_CONNECTIONS):
        path = os.path.join(run_dir, name)
        if os.path.exists(path):
            counters = SlotCounters(path, row)
            try:
                counters.clear_row(row)
            finally:
                counters.close()
    try:
        fd = os.open(os.path.join(run_dir, WORKER_LOAD), os.O_RDWR | os.O_CLOEXEC)
    except FileNotFoundError:
        return
    try:
        os.pwrite(fd, bytes(LOAD_SLOT.size), row * LOAD_SLOT.size)
    finally:
        os.close(fd)


class _SharedConnectionCounter(ConnectionCounter):
    """ConnectionCounter whose counts are the sum over all workers.

    The exact counts of this process stay in the base class's dict (for
    `len()` and release); the shared row mirrors them by bucket.  Two
    workers checking the same key at the same instant may both pass at
    limit - 1: a cap may be exceeded by (workers - 1) for a moment.
    """

    def __init__(self, limit: int, counters: SlotCounters):
        super().__init__(limit)
        self.counters = counters

    def acquire(self, key: str, protocol: str) -> bool:
        bucket = self.counters.bucket(f"{protocol}\0{key}")
        if self.limit and self.counters.total(bucket) >= self.limit:
            return False
        if not super().acquire(key, protocol):
            return False
        self.counters.add(bucket, 1)
        return True

    def release(self, key: str, protocol: str) -> None:
        if super().count(key, protocol) <= 0:
            return  # not ours: releasing must not eat another worker's count
        super().release(key, protocol)
        self.counters.add(self.counters.bucket(f"{protocol}\0{key}"), -1)

    def count(self, key: str, protocol: str) -> int:
        """Open connections of key across all workers."""
        return self.counters.total(self.counters.bucket(f"{protocol}\0{key}"))


class SharedPeerConnections(PeerConnections, _SharedConnectionCounter):
    """ctx.peer_connections across the workers (keys: client_key)."""


class SharedUserConnections(UserConnections, _SharedConnectionCounter):
    """ctx.connections across the workers (keys: lowercased address)."""


class SharedTable:
    """key -> (count, last, until) records in a mapped file, under flock.

    A record with count > 0 and `until` in the future (an active refusal)
    is never evicted; when a key's probe window holds nothing else, the key
    cannot be recorded and `get` answers it as refused until the earliest
    of them ends (fail closed)."""

    def __init__(self, path: str, forget_after: float, secret: bytes | None = None):
        self.path = path
        self.forget_after = forget_after
        self.secret = table_key(os.path.dirname(path)) if secret is None else secret
        self.fd, self.map = map_file(path)
        self.records = len(self.map) // _RECORD.size

    def _hash(self, key: str) -> int:
        return key_hash(key, self.secret)

    # -- locking ------------------------------------------------------------------
    def __enter__(self) -> SharedTable:
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        return self

    def __exit__(self, *exc: Any) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)

    # -- records (call inside `with table:`) -------------------------------------------
    def _expired(self, count: int, last: float, until: float, now: float) -> bool:
        return now >= max(last + self.forget_after, until)

    def _find(self, h: int, now: float) -> tuple[int | None, int | None, float]:
        """(offset of h's live record or None, offset to insert at or None
        when the window is full of active refusals, the earliest end of
        those refusals)."""
        start = h % self.records
        free = None
        oldest, oldest_last = None, float("inf")
        earliest = 0.0
        for i in range(PROBE):
            offset = ((start + i) % self.records) * _RECORD.size
            rh, count, last, until = _RECORD.unpack_from(self.map, offset)
            if rh == h:
                if self._expired(count, last, until, now):
                    _RECORD.pack_into(self.map, offset, 0, 0, 0.0, 0.0)
                    return None, offset, 0.0
                return offset, offset, 0.0
            if rh == 0 or self._expired(count, last, until, now):
                if free is None:
                    free = offset
            elif count > 0 and until > now:
                # Issue 16 #9: an active refusal is never evicted.
                if not earliest or until < earliest:
                    earliest = until
            elif last < oldest_last:
                oldest, oldest_last = offset, last
        insert = free if free is not None else oldest
        return None, insert, 0.0 if insert is not None else earliest

    def get(self, key: str, now: float) -> tuple[int, float]:
        with self:
            offset, _insert, full_until = self._find(self._hash(key), now)
            if offset is None:
                return 0, full_until  # full_until > 0: fail closed
            _h, count, _last, until = _RECORD.unpack_from(self.map, offset)
            return count, until

    def add(self, key: str, delta: int, now: float, drop_at_zero: bool = False) -> int:
        """count += delta (from 0 for a new key); the new count.  Not stored
        when the window is full of refusals; with drop_at_zero a count that
        reaches 0 frees its record."""
        h = self._hash(key)
        with self:
            offset, insert, _full = self._find(h, now)
            if offset is None:
                count, until = 0, 0.0
                offset = insert
            else:
                _h, count, _last, until = _RECORD.unpack_from(self.map, offset)
            count += delta
            if offset is None:
                return count
            if drop_at_zero and count <= 0:
                _RECORD.pack_into(self.map, offset, 0, 0, 0.0, 0.0)
            else:
                _RECORD.pack_into(self.map, offset, h, count, now, until)
            return count

    def put(self, key: str, count: int, until: float, now: float) -> None:
        """Set key's record (if the window has room)."""
        h = self._hash(key)
        with self:
            offset, insert, _full = self._find(h, now)
            target = offset if offset is not None else insert
            if target is not None:
                _RECORD.pack_into(self.map, target, h, count, now, until)

    def update(self, key: str, change: Callable[[int | None], int | None], now: float) -> int | None:
        """Atomically: new = change(key's count or None if it has no record);
        stored unless None or unchanged.  -> the old count."""
        h = self._hash(key)
        with self:
            offset, insert, _full = self._find(h, now)
            old = None if offset is None else _RECORD.unpack_from(self.map, offset)[1]
            new = change(old)
            target = offset if offset is not None else insert
            if new is not None and new != old and target is not None:
                _RECORD.pack_into(self.map, target, h, new, now, 0.0)
            return old

    def _locate(self, h: int) -> int | None:
        """Offset of h's record, live or not."""
        start = h % self.records
        for i in range(PROBE):
            offset = ((start + i) % self.records) * _RECORD.size
            if _RECORD.unpack_from(self.map, offset)[0] == h:
                return offset
        return None

    def set_until(self, key: str, until: float) -> None:
        """Keep key's record (if any) at least until `until`."""
        with self:
            offset = self._locate(self._hash(key))
            if offset is not None:
                rh, count, last, old = _RECORD.unpack_from(self.map, offset)
                _RECORD.pack_into(self.map, offset, rh, count, last, max(old, until))

    def delete(self, key: str) -> None:
        with self:
            offset = self._locate(self._hash(key))
            if offset is not None:
                _RECORD.pack_into(self.map, offset, 0, 0, 0.0, 0.0)

    def __len__(self) -> int:
        with self:
            return sum(1 for i in range(self.records)
                       if _RECORD.unpack_from(self.map, i * _RECORD.size)[0])

    def close(self) -> None:
        self.map.close()
        os.close(self.fd)


@implementer(IFailureCounts)
class SharedFailureCounts:
    """IFailureCounts in a SharedTable: a failure in one worker slows or
    refuses the next attempt in any worker.  Same forgetting rule as
    xmail.auth.throttle.MemoryFailureCounts."""

    def __init__(self, path: str, forget_after: float):
        self.table = SharedTable(path, forget_after)

    @staticmethod
    def _key(scope: str, key: str) -> str:
        return f"{scope}\0{key}"

    def get(self, scope: str, key: str, now: float) -> tuple[int, float]:
        return self.table.get(self._key(scope, key), now)

    def add_failure(self, scope: str, key: str, now: float) -> int:
        return self.table.add(self._key(scope, key), 1, now)

    def refuse(self, scope: str, key: str, until: float) -> None:
        self.table.set_until(self._key(scope, key), until)

    def reset(self, scope: str, key: str) -> None:
        self.table.delete(self._key(scope, key))

    def flight(self, scope: str, key: str, delta: int, now: float) -> int:
        """Logins of key being checked in any worker (issue 16 #9): one
        atomic add under the table's lock, so a parallel burst spread over
        the workers is counted as one.  The record goes at 0; a worker that
        dies mid-check leaves its count until forget_after."""
        return max(0, self.table.add(self._key("flight", f"{scope}\0{key}"), delta, now, drop_at_zero=True))

    # -- trusted (address, account) pairs --------------------------------------------
    # Count -1 marks a trust: not a refusal, so a full window may evict it
    # (its owner is then merely slowed like anybody else).
    def trust(self, pair: str, until: float, now: float) -> None:
        """The pair logged in successfully: trusted until `until`."""
        self.table.put(self._key("trust", pair), -1, until, now)

    def trusted(self, pair: str, now: float) -> bool:
        count, until = self.table.get(self._key("trust", pair), now)
        return count == -1 and until > now

    def __len__(self) -> int:
        return len(self.table)


class SharedDailySendCounter:
    """The SMTP daily send limit across workers; the two methods of
    xmail.protocols.smtp.limits.DailySendCounter."""

    def __init__(self, path: str, limit: int, clock: Callable[[], float] = time.time):
        self.limit = limit  # 0 = unlimited
        self._clock = clock
        self.table = SharedTable(path, forget_after=2 * 86400.0)

    def _key(self, user: str) -> tuple[str, float]:
        now = self._clock()
        return f"{int(now // 86400)}\0{user}", now

    def reached(self, user: str) -> bool:
        if not self.limit:
            return False
        key, now = self._key(user)
        return self.table.get(key, now)[0] >= self.limit

    def record(self, user: str, messages: int = 1) -> None:
        key, now = self._key(user)
        self.table.add(key, messages, now)


class SharedRecentClaims:
    """IMAP \\Recent claims (RecentTracker's store) shared by the workers:
    per (user, folder, UIDVALIDITY) the highest UID a session was told of,
    read and raised under the table's lock so two sessions in two workers
    never both get \\Recent for one message.  A claim evicted from a full
    probe window is forgotten like one of a restarted server."""

    KEEP = 10 * 365 * 86400.0  # claims do not expire; only eviction forgets them

    def __init__(self, path: str, clock: Callable[[], float] = time.time):
        self.table = SharedTable(path, self.KEEP)
        self.clock = clock

    def update(self, key: str, change: Callable[[int | None], int | None]) -> int | None:
        return self.table.update(key, change, self.clock())

    def close(self) -> None:
        self.table.close()
