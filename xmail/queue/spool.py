# -*- test-case-name: tests.queue.test_spool -*-
"""The durable outbound spool: one file per message, state in the index.

Layout (DESIGN.md "Data directory"):

- ``data_dir/queue/<id>.eml`` holds the message, written once (CRLF line
  endings, fsync'd, renamed into place, directory fsync'd) before its
  record is committed;
- the LMDB database ``queue`` maps the id to a JSON record with the
  envelope and every recipient's state (attempts, next attempt, last reply,
  pending DSN);
- ``queue_due`` is a secondary index ``<next attempt in ms> <id>`` so the
  runner (and `xmailctl queue retry`) find due messages without a full scan.

The file is written before the record and removed after the record is
deleted, so a crash leaves at worst an orphan file, never a record without
its message.  Orphans are swept at start.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

QUEUE_DB = "queue"
DUE_DB = "queue_due"
_SUFFIX = ".eml"
_CHUNK = 1 << 16
_ID = re.compile(r"^[0-9A-F]{8,24}$")

# Recipient states.
QUEUED = "queued"
SENT = "sent"
FAILED = "failed"


@dataclass
class RecipientState:
    address: str
    notify: tuple[str, ...] = ()
    orcpt: str | None = None
    state: str = QUEUED
    attempts: int = 0  # temporary failures so far
    next_attempt: float = 0.0
    last_attempt: float | None = None
    status: str = ""  # RFC 3463 status of the last reply
    diagnostic: str = ""  # the last reply, "451 4.7.1 try later"
    remote_mta: str = ""
    report: str = ""  # a DSN action still to send: "failed", "delayed", "relayed"
    warned: bool = False  # a "delayed" DSN was sent


@dataclass
class QueuedMessage:
    id: str
    mail_from: str
    created: float
    size: int
    recipients: list[RecipientState] = field(default_factory=list)
    envid: str | None = None
    ret: str | None = None
    due_key: str = ""  # the key of this record in queue_due, "" when not due

    def next_attempt(self) -> float | None:
        times = [r.next_attempt for r in self.recipients if r.state == QUEUED]
        return min(times) if times else None

    def finished(self) -> bool:
        return all(r.state != QUEUED and not r.report for r in self.recipients)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), separators=(",", ":")).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> QueuedMessage:
        data = json.loads(raw)
        recipients = [
            RecipientState(**{**r, "notify": tuple(r.get("notify", ()))}) for r in data.pop("recipients")
        ]
        return cls(recipients=recipients, **data)


def new_id() -> str:
    """Sortable by arrival (seconds, hex), unique by 48 random bits."""
    return f"{int(time.time()):08X}{secrets.token_hex(6).upper()}"


def valid_id(queue_id: str) -> bool:
    return bool(_ID.match(queue_id))


def _due_key(when: float, queue_id: str) -> bytes:
    return b"%015d %s" % (max(0, int(when * 1000)), queue_id.encode())


class Spool:
    """The queue directory and the two LMDB databases; no reactor here.

    Record methods take an LMDB transaction so that callers compose them
    inside `IndexEnvironment.write` (daemon) or `write_sync` (CLI).
    """

    def __init__(self, env: Any, directory: str):
        self.env = env
        self.directory = directory
        # Handles must exist before any transaction that uses them begins.
        env.db(QUEUE_DB)
        env.db(DUE_DB)

    # -- files (call in a thread) ------------------------------------------
    def path(self, queue_id: str) -> str:
        if not valid_id(queue_id):
            raise ValueError(f"not a queue id: {queue_id!r}")
        return os.path.join(self.directory, queue_id + _SUFFIX)

    def write_message(self, queue_id: str, source: bytes | str) -> int:
        """Copy source (bytes or a file path) into the spool durably.

        Bare LF becomes CRLF on the way (the store's invariant holds for the
        queue too, and DATA needs CRLF).  Returns the size in octets.
        """
        final = self.path(queue_id)
        tmp = final + ".tmp"
        size = 0
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as out:
                normalizer = CrlfNormalizer()
                for chunk in _chunks(source):
                    data = normalizer.feed(chunk)
                    size += len(data)
                    out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, final)
        except BaseException:
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise
        self._sync_dir()
        return size

    def remove_message(self, queue_id: str) -> None:
        try:
            os.unlink(self.path(queue_id))
        except FileNotFoundError:
            pass

    def _sync_dir(self) -> None:
        fd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def sweep_orphans(self, min_age: float = 3600.0) -> list[str]:
        """Remove message files that no record points to (a crash between
        the file and the index commit: the sender never got its 250) and
        stale temporary files.  Young files are left alone: another process
        may be between the two steps right now."""
        removed = []
        now = time.time()
        with self.env.read() as txn:
            db = self.env.db(QUEUE_DB)
            for name in os.listdir(self.directory):
                path = os.path.join(self.directory, name)
                base = name.split(".", 1)[0]
                if not (name.endswith(_SUFFIX) or name.endswith(_SUFFIX + ".tmp")):
                    continue
                if name.endswith(_SUFFIX) and txn.get(base.encode(), db=db) is not None:
                    continue
                try:
                    if now - os.stat(path).st_mtime < min_age:
                        continue
                    os.unlink(path)
                    removed.append(name)
                except FileNotFoundError:
                    continue
        return removed

    # -- records (inside a transaction) --------------------------------------
    def get(self, txn: Any, queue_id: str) -> QueuedMessage | None:
        raw = txn.get(queue_id.encode(), db=self.env.db(QUEUE_DB))
        return QueuedMessage.from_json(raw) if raw is not None else None

    def put(self, txn: Any, message: QueuedMessage) -> None:
        """Write a record and keep its queue_due entry in step."""
        due_db = self.env.db(DUE_DB)
        if message.due_key:
            txn.delete(message.due_key.encode(), db=due_db)
            message.due_key = ""
        when = message.next_attempt()
        if when is not None:
            key = _due_key(when, message.id)
            txn.put(key, b"", db=due_db)
            message.due_key = key.decode()
        txn.put(message.id.encode(), message.to_json(), db=self.env.db(QUEUE_DB))

    def delete(self, txn: Any, queue_id: str) -> QueuedMessage | None:
        message = self.get(txn, queue_id)
        if message is None:
            return None
        if message.due_key:
            txn.delete(message.due_key.encode(), db=self.env.db(DUE_DB))
        txn.delete(queue_id.encode(), db=self.env.db(QUEUE_DB))
        return message

    def all(self, txn: Any) -> Iterator[QueuedMessage]:
        cursor = txn.cursor(db=self.env.db(QUEUE_DB))
        for _key, raw in cursor:
            yield QueuedMessage.from_json(raw)

    def stats(self, txn: Any) -> tuple[int, float | None]:
        """(records, oldest arrival): ids begin with the arrival second in
        hex, so the first key is the oldest message."""
        db = self.env.db(QUEUE_DB)
        count = txn.stat(db)["entries"]
        cursor = txn.cursor(db=db)
        if not cursor.first():
            return count, None
        return count, QueuedMessage.from_json(cursor.value()).created

    def due(self, txn: Any, now: float) -> tuple[list[str], float | None]:
        """(ids due at `now`, the time of the next later attempt or None)."""
        ids: list[str] = []
        cursor = txn.cursor(db=self.env.db(DUE_DB))
        for key, _ in cursor:
            stamp, _, queue_id = key.partition(b" ")
            when = int(stamp) / 1000.0
            if when > now:
                return ids, when
            ids.append(queue_id.decode())
        return ids, None

    def reschedule(self, txn: Any, queue_id: str, when: float) -> bool:
        """Make every queued recipient of a message due at `when`
        (`xmailctl queue retry`)."""
        message = self.get(txn, queue_id)
        if message is None:
            return False
        for r in message.recipients:
            if r.state == QUEUED:
                r.next_attempt = when
        self.put(txn, message)
        return True


def _chunks(source: bytes | str) -> Iterator[bytes]:
    if isinstance(source, bytes):
        for i in range(0, len(source), _CHUNK):
            yield source[i : i + _CHUNK]
        return
    with open(source, "rb") as f:
        while chunk := f.read(_CHUNK):
            yield chunk


class CrlfNormalizer:
    """Bare LF -> CRLF, across chunk boundaries."""

    _BARE_LF = re.compile(rb"(?<!\r)\n")

    def __init__(self) -> None:
        self._last_cr = False

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        head = b""
        if self._last_cr and chunk.startswith(b"\n"):
            head, chunk = b"\n", chunk[1:]
        self._last_cr = (head + chunk).endswith(b"\r")
        return head + self._BARE_LF.sub(b"\r\n", chunk)
