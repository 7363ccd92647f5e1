# -*- test-case-name: tests.store.test_fulltext -*-
"""The full-text index of message bodies: SQLite FTS5 with the trigram tokenizer.

Body text used to sit in the LMDB index (`store.meta`, ~7 kB a message),
which every process maps and touches; here it lives in one SQLite file,
data_dir/index/fulltext.sqlite, read through SQLite's bounded page cache
(issue 15, memory).  One row a message:

    body(rowid = fid << 32 | uid, text, cut UNINDEXED)

`text` is the parser's case-folded digest (MessageMeta.text); `cut` says
the digest stopped short of the whole body.  The trigram tokenizer indexes
every run of three characters, so `text GLOB '*needle*'` is a substring
query in any script (中文 included): SQLite finds candidate rows by the
needle's trigrams and checks each against the stored text, so the answer
is exact.  detail=none keeps no token positions (GLOB does not need them):
4.8 kB a message for 4.5 kB of text, against 13 kB with positions.
Case: the stored text and the needle are both str.casefold()ed, so the
tokenizer is case-sensitive (nothing to fold twice).  A needle under three
characters has no trigram: it is looked for with instr() over the rows of
the one folder (rowid range), a scan bounded by the folder's size.

Writes (add, copy, remove, drop folder) are queued after the LMDB
transaction that made them commits (IndexEnvironment.after_commit) and
applied in batches by one thread per process, off the reactor.  The index
is a cache: a message missing from it (queue full, crash, an index from
before this file existed) is "undecided" and the searcher reads its file,
then hands the text back (`add_text`) so the next search finds it here;
`xmailctl reindex` fills in whatever is missing.  Hence no fsync
(synchronous=OFF): losing the tail of it costs speed, never answers.
Several processes (workers, xmailctl) share the file under SQLite's locks.
"""

from __future__ import annotations

import os
import queue
import sqlite3
import threading
from collections.abc import Iterable
from typing import Any

from twisted.logger import Logger

FILENAME = "fulltext.sqlite"
MIN_TRIGRAM = 3  # characters a needle needs for the trigram index
_MAX_QUEUED_TEXT = 64 << 20  # characters of text waiting to be written, per process
_MAX_QUEUED_OPS = 200_000
_BATCH = 256  # operations applied in one SQLite transaction
_BUSY_TIMEOUT_MS = 30_000
_CACHE_KIB = 2048  # SQLite page cache per connection

_SCHEMA = ("CREATE VIRTUAL TABLE IF NOT EXISTS body USING fts5("
           "text, cut UNINDEXED, tokenize='trigram case_sensitive 1', detail=none)")

# Operations: ("add", rowid, text, cut) ("copy", src rowid, dest rowid)
#             ("remove", rowid) ("drop", fid) ("clear",)
Op = tuple[Any, ...]


def rowid(fid: int, uid: int) -> int:
    return (fid << 32) | uid


_GLOB_SPECIAL = {"*": "[*]", "?": "[?]", "[": "[[]"}


def glob_contains(needle: str) -> str:
    """The GLOB pattern of "contains needle": *, ? and [ match themselves
    inside brackets (SQLite GLOB has no escape character)."""
    return "*" + "".join(_GLOB_SPECIAL.get(ch, ch) for ch in needle) + "*"


class FullTextIndex:
    """Queued writes on one thread (threaded=True, the daemon) or applied
    at once in the caller's thread (threaded=False: xmailctl, tests)."""

    _log = Logger()

    def __init__(self, path: str, *, threaded: bool):
        self.path = path
        self.threaded = threaded
        self._queue: queue.Queue[Op | None] = queue.Queue(maxsize=_MAX_QUEUED_OPS)
        self._queued_text = 0
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._local = threading.local()
        self._connections: list[sqlite3.Connection] = []
        self.dropped = 0  # adds refused because the queue was full (tests, logs)
        self.applied = 0  # operations written (tests: wait for the thread)

    # -- connections -------------------------------------------------------------------------------
    def _connect(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            os.makedirs(os.path.dirname(self.path), mode=0o700, exist_ok=True)
            if not os.path.exists(self.path):
                os.close(os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600))
            conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_MS / 1000, isolation_level=None,
                                   check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = OFF")  # a cache: see the module docstring
            conn.execute(f"PRAGMA cache_size = -{_CACHE_KIB}")
            conn.execute(_SCHEMA)
            self._local.conn = conn
            with self._lock:
                self._connections.append(conn)
        return conn

    def close(self) -> None:
        self.stop()
        with self._lock:
            connections, self._connections = self._connections, []
        for conn in connections:
            try:
                conn.close()
            except sqlite3.Error:
                pass
        self._local = threading.local()

    # -- the writer thread -------------------------------------------------------------------------
    def start(self) -> None:
        if self.threaded and self._thread is None:
            self._thread = threading.Thread(target=self._run, name="xmail-fulltext", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Write what is queued, then stop the thread."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()

    def _run(self) -> None:
        while True:
            op = self._queue.get()
            if op is None:
                return
            batch = [op]
            stop = False
            while len(batch) < _BATCH:
                try:
                    op = self._queue.get_nowait()
                except queue.Empty:
                    break
                if op is None:
                    stop = True
                    break
                batch.append(op)
            self._apply_logged(batch)
            if stop:
                return

    def _apply_logged(self, batch: list[Op]) -> None:
        try:
            self._apply(batch)
        except sqlite3.Error:
            self._log.failure("full-text index update failed ({count} operations)", count=len(batch))
        finally:
            released = sum(len(op[2]) for op in batch if op[0] == "add")
            with self._lock:
                self._queued_text -= released
                self.applied += len(batch)
            for op in batch:
                if op[0] == "flush":
                    op[1].set()

    def _apply(self, batch: list[Op]) -> None:
        conn = self._connect()
        conn.execute("BEGIN IMMEDIATE")
        try:
            for op in batch:
                kind = op[0]
                if kind == "add":
                    conn.execute("DELETE FROM body WHERE rowid = ?", (op[1],))
                    conn.execute("INSERT INTO body(rowid, text, cut) VALUES (?, ?, ?)", (op[1], op[2], op[3]))
                elif kind == "copy":
                    conn.execute("DELETE FROM body WHERE rowid = ?", (op[2],))
                    conn.execute("INSERT INTO body(rowid, text, cut) SELECT ?, text, cut FROM body "
                                 "WHERE rowid = ?", (op[2], op[1]))
                elif kind == "remove":
                    conn.execute("DELETE FROM body WHERE rowid = ?", (op[1],))
                elif kind == "drop":
                    conn.execute("DELETE FROM body WHERE rowid BETWEEN ? AND ?",
                                 (rowid(op[1], 0), rowid(op[1], 0xFFFFFFFF)))
                elif kind == "clear":
                    conn.execute("DELETE FROM body")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise

    # -- writes ------------------------------------------------------------------------------------
    def submit(self, ops: Iterable[Op]) -> None:
        """Queue operations (any thread).  An add that does not fit the
        bounded queue is dropped: that message stays undecided (searched in
        its file) until a search or reindex adds it again."""
        ops = list(ops)
        if not ops:
            return
        if not self.threaded:
            self._apply_logged_now(ops)
            return
        self.start()
        for op in ops:
            size = len(op[2]) if op[0] == "add" else 0
            with self._lock:
                if size and self._queued_text + size > _MAX_QUEUED_TEXT:
                    self.dropped += 1
                    continue
                self._queued_text += size
            try:
                self._queue.put_nowait(op)
            except queue.Full:
                with self._lock:
                    self._queued_text -= size
                    self.dropped += 1
                if op[0] != "add":
                    # A removal must not be lost (expunged text would stay
                    # searchable in the file): wait for room.
                    self._queue.put(op)

    def _apply_logged_now(self, ops: list[Op]) -> None:
        with self._lock:
            self._queued_text += sum(len(op[2]) for op in ops if op[0] == "add")
        self._apply_logged(ops)

    def add_text(self, fid: int, uid: int, text: str, cut: bool) -> None:
        self.submit([("add", rowid(fid, uid), text, int(cut))])

    def clear(self) -> None:
        self.submit([("clear",)])

    def flush(self, timeout: float = 30.0) -> None:
        """Wait until what was queued before this call is written (tests,
        reindex).  No-op without a thread."""
        if self._thread is None:
            return
        done = threading.Event()
        self._queue.put(("flush", done))
        done.wait(timeout)

    # -- reads -------------------------------------------------------------------------------------
    def search(self, fid: int, needle: str, uids: Iterable[int]) -> tuple[set[int], set[int]]:
        """Of the folder's uids -> (those whose body contains needle, those
        the index cannot decide: not indexed, or cut short without a match).

        needle is already case-folded (str.casefold), as the stored text is.
        Any thread; the query runs with the GIL released.
        """
        wanted = set(uids)
        conn = self._connect()
        low, high = rowid(fid, 0), rowid(fid, 0xFFFFFFFF)
        indexed: dict[int, int] = {}
        for row, cut in conn.execute("SELECT rowid, cut FROM body WHERE rowid BETWEEN ? AND ?", (low, high)):
            indexed[row & 0xFFFFFFFF] = cut
        if len(needle) >= MIN_TRIGRAM:
            rows = conn.execute("SELECT rowid FROM body WHERE text GLOB ? AND rowid BETWEEN ? AND ?",
                                (glob_contains(needle), low, high))
        else:
            # FTS5 answers a pattern without a trigram with no rows, not a
            # scan: scan the folder's rows ourselves (inside SQLite).
            rows = conn.execute("SELECT rowid FROM body WHERE rowid BETWEEN ? AND ? AND instr(text, ?) > 0",
                                (low, high, needle))
        matched = {row & 0xFFFFFFFF for (row,) in rows} & wanted
        undecided = {uid for uid in wanted if uid not in matched and indexed.get(uid, 1)}
        return matched, undecided

    def indexed(self, fid: int) -> set[int]:
        """UIDs of the folder that have a row (reindex, tests)."""
        conn = self._connect()
        return {row & 0xFFFFFFFF for (row,) in conn.execute(
            "SELECT rowid FROM body WHERE rowid BETWEEN ? AND ?", (rowid(fid, 0), rowid(fid, 0xFFFFFFFF)))}
