# -*- test-case-name: tests.store.test_uids, tests.store.test_modseq -*-
"""UidIndex: the store's LMDB schema and the transactional edits on it.

Every function here takes an open LMDB transaction and does no file I/O, so
the same code runs in the daemon's group-commit writer thread and in
`xmailctl`'s synchronous transactions.  UIDs and MODSEQs are allocated inside
the write transaction, which LMDB serialises across processes: two processes
appending to one folder can never hand out the same UID.

Databases (keys are bytes; fid = 8-byte folder id, uid = 4 bytes, big-endian
so that cursor order is numeric order):

  store.users     address                  -> (bytes used, messages used)
  store.folders   address \\0 name          -> fid
  store.fstate    fid                      -> FolderState
  store.records   fid + uid>>7 (4 bytes)   -> [(uid, flags, modseq, size, internaldate, base), ...]
  store.meta      fid + uid                -> cached parse results: the MIME structure
  store.headers   fid + uid                -> cached header fields (SEARCH reads only these)
  store.names     fid + base name          -> uid  (reindex, drop-in pickup)
  store.modseq    fid + modseq(8) + uid    -> ""   (change notification, CONDSTORE)
  store.expunged  fid + modseq(8) + uid    -> expunge time (tombstones, RFC 7162 VANISHED)
  store.recycle   fid + uid                -> (original folder, expunged_at, expires_at, subject)
  store.sentids   address \\0 message-id    -> (fid, uid, saved_at)  (send-save dedup)
  store.subs      address \\0 name          -> ""
  store.counters  name                     -> 8-byte counter

Records are kept 128 to an LMDB value: listing a 100,000-message folder is
~800 marshal.loads calls instead of 100,000 (the "open a big folder" path),
while one append rewrites one small value.  Values use marshal: the fastest
decoder in the standard library for plain tuples, dicts and frozensets.
marshal's format belongs to the Python that wrote it, so the format of
these databases is recorded as FORMAT_NAME -> format_tag() in db.formats
and checked at open (xmail.store.upgrade converts or rebuilds).

Body text is not here: it goes to the full-text index (xmail.store.fulltext)
once the transaction that adds a message commits (schema 2; schema 1 kept
a 256 kB text digest in store.meta, ~7 kB a message, mapped by every process).
"""

from __future__ import annotations

import bisect
import gc
import json
import marshal
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import lmdb

from xmail.db import formats
from xmail.store.fulltext import rowid as fulltext_rowid
from xmail.store.interfaces import MessageMeta, MessageRecord
from xmail.store.names import RECYCLE

# The layout of the store.* databases; bump it with a conversion step in
# xmail.store.upgrade.  1: text digest in store.meta.  2: text in the
# full-text index, store.meta holds the structure alone.
SCHEMA = 2
FORMAT_NAME = "store"


def format_tag(schema: int = SCHEMA) -> str:
    """What db.formats records for the store: "schema 2; marshal4/py3.11"."""
    return f"schema {schema}; {formats.codec_tag()}"


CHUNK_SHIFT = 7
# MessageRecords kept for re-listing big folders, least recently used chunk
# dropped first: ~460-610 bytes each with their chunk's raw value (RSS and
# tracemalloc), so at most ~18 MB per process.  Counted in records, not
# bytes: a record's size hardly varies (flags are interned keywords), and a
# count costs nothing to keep.  30,000 covers the folders one worker's
# sessions re-list often (a 25,000-message INBOX stays cached); a bigger
# folder is rebuilt from its chunks on each listing (issue 15, memory; was
# 200,000, ~115 MB a worker after a few big SELECTs; docs/decisions.md).
CACHE_RECORDS = 30_000
_U64 = struct.Struct(">Q")
_U32 = struct.Struct(">I")

RecordTuple = tuple[int, frozenset, int, int, float, str]


def _uid_of(record: MessageRecord) -> int:
    return record.uid


def fid_key(fid: int) -> bytes:
    return _U64.pack(fid)


def msg_key(fid: int, uid: int) -> bytes:
    return _U64.pack(fid) + _U32.pack(uid)


def chunk_key(fid: int, uid: int) -> bytes:
    return _U64.pack(fid) + _U32.pack(uid >> CHUNK_SHIFT)


def seq_key(fid: int, modseq: int, uid: int) -> bytes:
    return _U64.pack(fid) + _U64.pack(modseq) + _U32.pack(uid)


def user_key(address: str, name: str = "") -> bytes:
    return address.encode("utf-8") + b"\0" + name.encode("utf-8")


@dataclass
class FolderState:
    """Per folder counters (RFC 3501 §2.3.1.1 UIDVALIDITY/UIDNEXT, RFC 7162
    HIGHESTMODSEQ) and where the folder lives."""

    address: str
    name: str
    dirname: str
    uidvalidity: int
    uidnext: int = 1
    modseq: int = 1
    messages: int = 0
    unseen: int = 0
    size: int = 0
    special_use: str | None = None
    keywords: list[str] = field(default_factory=list)
    # The expunge log (tombstones) holds every expunge with a MODSEQ above
    # this; older ones were compacted away (see UidIndex.prune_expunge_log).
    expunge_floor: int = 0

    def encode(self) -> bytes:
        return marshal.dumps((2, self.address, self.name, self.dirname, self.uidvalidity, self.uidnext,
                              self.modseq, self.messages, self.unseen, self.size, self.special_use,
                              list(self.keywords), self.expunge_floor))

    @classmethod
    def decode(cls, raw: bytes) -> FolderState:
        fields = marshal.loads(raw)
        # Version 1 had no expunge_floor: its log was never compacted... or
        # was, by age, without a record; 0 is what it claimed.
        return cls(*fields[1:12], expunge_floor=fields[12] if fields[0] >= 2 else 0)


def _pack(value: Any) -> bytes:
    try:
        return b"M" + marshal.dumps(value)
    except ValueError:
        # A type marshal does not know (the parser's business): JSON instead.
        return b"J" + json.dumps(value, default=str).encode("utf-8")


def _unpack(raw: bytes | None, default: Any) -> Any:
    if not raw:
        return default
    if raw[:1] == b"M":
        return marshal.loads(raw[1:])
    return json.loads(raw[1:].decode("utf-8"))


def encode_meta(meta: MessageMeta) -> bytes:
    """One blob carried from the parser to the index; split there into the
    headers (store.headers: SEARCH reads them alone), the structure
    (store.meta) and the body text (the full-text index):

        u32 len(headers) + headers + u32 len(structure) + structure + cut flag + text (UTF-8)
    """
    headers = _pack(meta.headers)
    structure = _pack(meta.structure)
    cut = b"1" if meta.structure.get("text_cut") else b"0"
    return (_U32.pack(len(headers)) + headers + _U32.pack(len(structure)) + structure + cut
            + meta.text.encode("utf-8", "surrogatepass"))


def split_meta(blob: bytes | None) -> tuple[bytes, bytes, bytes]:
    """-> (headers, structure, cut flag + text) of an encode_meta blob."""
    if not blob:
        return b"", b"", b""
    (length,) = _U32.unpack_from(blob)
    headers = blob[4:4 + length]
    at = 4 + length
    if len(blob) < at + 4:
        return headers, b"", b""
    (slength,) = _U32.unpack_from(blob, at)
    return headers, blob[at + 4:at + 4 + slength], blob[at + 4 + slength:]


def text_of(raw: bytes) -> tuple[str, bool]:
    """(text, cut) of split_meta's third part."""
    if not raw:
        return "", False
    return raw[1:].decode("utf-8", "surrogatepass"), raw[:1] == b"1"


def decode_meta(blob: bytes | None) -> MessageMeta:
    headers_raw, structure_raw, text_raw = split_meta(blob)
    return MessageMeta(structure=_unpack(structure_raw, {}), headers=_unpack(headers_raw, {}),
                       text=text_of(text_raw)[0])


def decode_headers(raw: bytes | None) -> dict[str, str]:
    return _unpack(raw, {})


class UidIndex:
    """Handles of the store's databases plus the edits on them."""

    def __init__(self, env: Any, fulltext: Any = None):
        """fulltext: the FullTextIndex body text goes to (None: nowhere,
        SEARCH BODY reads the files)."""
        self.env = env
        self.fulltext = fulltext
        self.formats = env.db(formats.FORMATS_DB)
        self.users = env.db("store.users")
        self.folders = env.db("store.folders")
        self.fstate = env.db("store.fstate")
        self.records_db = env.db("store.records")
        self.meta_db = env.db("store.meta")
        self.headers_db = env.db("store.headers")
        self.names = env.db("store.names")
        self.modseq = env.db("store.modseq")
        self.expunged = env.db("store.expunged")
        self.recycle = env.db("store.recycle")
        self.sentids = env.db("store.sentids")
        self.subs = env.db("store.subs")
        self.counters = env.db("store.counters")
        # chunk key -> (stored bytes, records built from them), least recent first
        self._chunk_cache: OrderedDict[bytes, tuple[bytes, list[MessageRecord]]] = OrderedDict()
        self._cached_records = 0
        self._cache_lock = threading.Lock()

    # -- counters ---------------------------------------------------------------------
    def _next(self, txn: lmdb.Transaction, name: bytes, at_least: int = 1) -> int:
        raw = txn.get(name, db=self.counters)
        value = max(_U64.unpack(raw)[0] + 1 if raw else 1, at_least)
        txn.put(name, _U64.pack(value), db=self.counters)
        return value

    def bump_changes(self, txn: lmdb.Transaction) -> None:
        """One counter for every record change of any folder, any process:
        pollers read it first and skip the per-folder reads when it stands."""
        self._next(txn, b"changes")

    def change_counter(self, txn: lmdb.Transaction) -> int:
        raw = txn.get(b"changes", db=self.counters)
        return _U64.unpack(raw)[0] if raw else 0

    # -- users ------------------------------------------------------------------------
    def usage(self, txn: lmdb.Transaction, address: str) -> tuple[int, int] | None:
        raw = txn.get(address.encode("utf-8"), db=self.users)
        return marshal.loads(raw) if raw else None

    def add_usage(self, txn: lmdb.Transaction, address: str, size: int, count: int) -> None:
        used_bytes, used_messages = self.usage(txn, address) or (0, 0)
        txn.put(address.encode("utf-8"),
                marshal.dumps((max(0, used_bytes + size), max(0, used_messages + count))), db=self.users)

    def set_usage(self, txn: lmdb.Transaction, address: str, size: int, count: int) -> None:
        txn.put(address.encode("utf-8"), marshal.dumps((size, count)), db=self.users)

    def all_users(self, txn: lmdb.Transaction) -> list[str]:
        return [k.decode("utf-8") for k in txn.cursor(db=self.users).iternext(values=False)]

    # -- folders ----------------------------------------------------------------------
    def folder_id(self, txn: lmdb.Transaction, address: str, name: str) -> int | None:
        raw = txn.get(user_key(address, name), db=self.folders)
        return _U64.unpack(raw)[0] if raw else None

    def state(self, txn: lmdb.Transaction, fid: int) -> FolderState | None:
        raw = txn.get(fid_key(fid), db=self.fstate)
        return FolderState.decode(raw) if raw else None

    def put_state(self, txn: lmdb.Transaction, fid: int, state: FolderState) -> None:
        txn.put(fid_key(fid), state.encode(), db=self.fstate)

    def folder_ids(self, txn: lmdb.Transaction, address: str) -> list[tuple[str, int]]:
        prefix = user_key(address)
        out = []
        cursor = txn.cursor(db=self.folders)
        if cursor.set_range(prefix):
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                out.append((key[len(prefix):].decode("utf-8"), _U64.unpack(value)[0]))
        return out

    def create_folder(self, txn: lmdb.Transaction, address: str, name: str, dirname: str,
                      special_use: str | None, now: float) -> tuple[int, FolderState]:
        fid = self._next(txn, b"folder_id")
        # RFC 3501 §2.3.1.1: a new folder of a name used before must not
        # repeat the old UIDVALIDITY; a strictly increasing counter seeded by
        # the clock guarantees that, even across reindexing.
        uidvalidity = self._next(txn, b"uidvalidity", at_least=int(now)) & 0xFFFFFFFF
        state = FolderState(address, name, dirname, uidvalidity, special_use=special_use)
        txn.put(user_key(address, name), fid_key(fid), db=self.folders)
        self.put_state(txn, fid, state)
        return fid, state

    def rename_folder_entry(self, txn: lmdb.Transaction, fid: int, state: FolderState, new_name: str,
                            new_dirname: str) -> None:
        txn.delete(user_key(state.address, state.name), db=self.folders)
        state.name = new_name
        state.dirname = new_dirname
        txn.put(user_key(state.address, new_name), fid_key(fid), db=self.folders)
        self.put_state(txn, fid, state)

    def drop_folder(self, txn: lmdb.Transaction, fid: int, state: FolderState) -> None:
        """Remove a folder's entries; its messages must be gone already."""
        txn.delete(user_key(state.address, state.name), db=self.folders)
        txn.delete(fid_key(fid), db=self.fstate)
        prefix = fid_key(fid)
        self.fulltext_ops(txn, [("drop", fid)])
        for db in (self.records_db, self.meta_db, self.headers_db, self.names, self.modseq, self.expunged,
                   self.recycle):
            cursor = txn.cursor(db=db)
            if cursor.set_range(prefix):
                while cursor.key().startswith(prefix):
                    if not cursor.delete():
                        break

    # -- subscriptions -------------------------------------------------------------------
    def subscriptions(self, txn: lmdb.Transaction, address: str) -> set[str]:
        prefix = user_key(address)
        out = set()
        cursor = txn.cursor(db=self.subs)
        if cursor.set_range(prefix):
            for key in cursor.iternext(values=False):
                if not key.startswith(prefix):
                    break
                out.add(key[len(prefix):].decode("utf-8"))
        return out

    def set_subscribed(self, txn: lmdb.Transaction, address: str, name: str, on: bool) -> None:
        if on:
            txn.put(user_key(address, name), b"", db=self.subs)
        else:
            txn.delete(user_key(address, name), db=self.subs)

    # -- records ----------------------------------------------------------------------------
    def iter_tuples(self, txn: lmdb.Transaction, fid: int) -> Iterator[RecordTuple]:
        prefix = fid_key(fid)
        cursor = txn.cursor(db=self.records_db)
        if not cursor.set_range(prefix):
            return
        loads = marshal.loads
        for key, value in cursor:
            if key[:8] != prefix:
                break
            yield from loads(value)

    def records(self, txn: lmdb.Transaction, fid: int) -> list[MessageRecord]:
        """Every record of a folder, by UID.

        Built chunk by chunk; a chunk whose stored bytes did not change since
        the last listing reuses the MessageRecords made then.  The cyclic GC
        is paused meanwhile: 100,000 new objects would otherwise trigger
        collections that cost as much as building them.
        """
        prefix = fid_key(fid)
        cursor = txn.cursor(db=self.records_db)
        out: list[MessageRecord] = []
        if not cursor.set_range(prefix):
            return out
        cache = self._chunk_cache
        record = MessageRecord
        loads = marshal.loads
        gc_enabled = gc.isenabled()
        gc.disable()
        try:
            for key, value in cursor:
                if key[:8] != prefix:
                    break
                with self._cache_lock:
                    cached = cache.get(key)
                if cached is not None and cached[0] == value:
                    out.extend(cached[1])
                    continue
                built = [record(*t) for t in loads(value)]
                out.extend(built)
                self._cache_chunk(key, value, built)
        finally:
            if gc_enabled:
                gc.enable()
        return out

    def _cache_chunk(self, key: bytes, value: bytes, built: list[MessageRecord]) -> None:
        with self._cache_lock:
            cache = self._chunk_cache
            old = cache.pop(key, None)
            if old is not None:
                self._cached_records -= len(old[1])
            cache[key] = (value, built)
            self._cached_records += len(built)
            while self._cached_records > CACHE_RECORDS and cache:
                _key, (_value, dropped) = cache.popitem(last=False)
                self._cached_records -= len(dropped)

    def _built_chunk(self, txn: lmdb.Transaction, key: bytes) -> list[MessageRecord]:
        raw = txn.get(key, db=self.records_db)
        if raw is None:
            return []
        with self._cache_lock:
            cached = self._chunk_cache.get(key)
        if cached is not None and cached[0] == raw:
            return cached[1]
        built = [MessageRecord(*t) for t in marshal.loads(raw)]
        self._cache_chunk(key, raw, built)
        return built

    def record(self, txn: lmdb.Transaction, fid: int, uid: int) -> MessageRecord | None:
        """One MessageRecord, from the records built for its chunk when the
        chunk has not changed (the per-message read path: FETCH, RETR)."""
        if uid <= 0 or uid > 0xFFFFFFFF:
            return None
        built = self._built_chunk(txn, chunk_key(fid, uid))
        at = bisect.bisect_left(built, uid, key=_uid_of)
        if at < len(built) and built[at].uid == uid:
            return built[at]
        return None

    def records_for(self, txn: lmdb.Transaction, fid: int, uids: Iterable[int]) -> list[MessageRecord]:
        """The records of the UIDs that exist, by UID; one read per chunk."""
        out: list[MessageRecord] = []
        chunk_no = -1
        by_uid: dict[int, MessageRecord] = {}
        for uid in sorted(set(int(u) for u in uids)):
            if uid <= 0 or uid > 0xFFFFFFFF:
                continue
            if uid >> CHUNK_SHIFT != chunk_no:
                chunk_no = uid >> CHUNK_SHIFT
                by_uid = {r.uid: r for r in self._built_chunk(txn, chunk_key(fid, uid))}
            record = by_uid.get(uid)
            if record is not None:
                out.append(record)
        return out

    def get(self, txn: lmdb.Transaction, fid: int, uid: int) -> RecordTuple | None:
        raw = txn.get(chunk_key(fid, uid), db=self.records_db)
        if raw is None:
            return None
        for t in marshal.loads(raw):
            if t[0] == uid:
                return t
        return None

    def get_many(self, txn: lmdb.Transaction, fid: int, uids: Iterable[int]) -> list[RecordTuple]:
        wanted = sorted(set(int(u) for u in uids))
        out: list[RecordTuple] = []
        chunk_no = -1
        chunk: dict[int, RecordTuple] = {}
        for uid in wanted:
            if uid <= 0 or uid > 0xFFFFFFFF:
                continue
            if uid >> CHUNK_SHIFT != chunk_no:
                chunk_no = uid >> CHUNK_SHIFT
                raw = txn.get(chunk_key(fid, uid), db=self.records_db)
                chunk = {t[0]: t for t in marshal.loads(raw)} if raw else {}
            t = chunk.get(uid)
            if t is not None:
                out.append(t)
        return out

    def meta(self, txn: lmdb.Transaction, fid: int, uid: int) -> bytes | None:
        """The encoded MessageMeta (see encode_meta) without its text, None
        if not cached."""
        key = msg_key(fid, uid)
        structure = txn.get(key, db=self.meta_db)
        headers = txn.get(key, db=self.headers_db)
        if structure is None and headers is None:
            return None
        headers = headers or b""
        structure = structure or b""
        return _U32.pack(len(headers)) + headers + _U32.pack(len(structure)) + structure

    # -- full-text index: operations queued once the transaction commits ---------------------
    def fulltext_ops(self, txn: lmdb.Transaction, ops: list[tuple]) -> None:
        """Hand ops to the full-text index after txn commits (never if it aborts)."""
        fulltext = self.fulltext
        if fulltext is not None and ops:
            self.env.after_commit(txn, lambda: fulltext.submit(ops))

    def headers(self, txn: lmdb.Transaction, fid: int, uid: int) -> dict[str, str]:
        return decode_headers(txn.get(msg_key(fid, uid), db=self.headers_db))

    def uid_by_name(self, txn: lmdb.Transaction, fid: int, base: str) -> int | None:
        raw = txn.get(fid_key(fid) + base.encode("utf-8"), db=self.names)
        return _U32.unpack(raw)[0] if raw else None

    def changes_since(self, txn: lmdb.Transaction, fid: int, modseq: int) -> tuple[list[int], list[int]]:
        """(uids whose record changed or appeared, uids expunged) after modseq."""
        changed: list[int] = []
        expunged: list[int] = []
        start = seq_key(fid, modseq + 1, 0)
        prefix = fid_key(fid)
        for db, out in ((self.modseq, changed), (self.expunged, expunged)):
            cursor = txn.cursor(db=db)
            if cursor.set_range(start):
                for key in cursor.iternext(values=False):
                    if key[:8] != prefix:
                        break
                    out.append(_U32.unpack(key[16:20])[0])
        return changed, expunged

    def _log_since(self, txn: lmdb.Transaction, db: Any, fid: int, modseq: int) -> list[int]:
        out: list[int] = []
        prefix = fid_key(fid)
        cursor = txn.cursor(db=db)
        if cursor.set_range(seq_key(fid, modseq + 1, 0)):
            for key in cursor.iternext(values=False):
                if key[:8] != prefix:
                    break
                out.append(_U32.unpack(key[16:20])[0])
        return out

    def changed_uids_since(self, txn: lmdb.Transaction, fid: int, modseq: int) -> list[int]:
        """UIDs of existing messages with MODSEQ > modseq (MODSEQ order)."""
        return self._log_since(txn, self.modseq, fid, modseq)

    def expunged_uids_since(self, txn: lmdb.Transaction, fid: int, modseq: int) -> list[int]:
        """Tombstones with MODSEQ > modseq (MODSEQ order)."""
        return self._log_since(txn, self.expunged, fid, modseq)

    def editor(self, txn: lmdb.Transaction, fid: int, state: FolderState) -> RecordEditor:
        return RecordEditor(self, txn, fid, state)

    # -- recycle / send-save ---------------------------------------------------------------------
    def recycle_info(self, txn: lmdb.Transaction, fid: int, uid: int) -> tuple | None:
        raw = txn.get(msg_key(fid, uid), db=self.recycle)
        return marshal.loads(raw) if raw else None

    def put_recycle(self, txn: lmdb.Transaction, fid: int, uid: int, info: tuple) -> None:
        """info: (original folder, expunged_at, expires_at, subject)."""
        txn.put(msg_key(fid, uid), marshal.dumps(info), db=self.recycle)

    def recycle_entries(self, txn: lmdb.Transaction, fid: int | None = None
                        ) -> Iterator[tuple[int, int, tuple]]:
        cursor = txn.cursor(db=self.recycle)
        prefix = fid_key(fid) if fid is not None else b""
        if not cursor.set_range(prefix):
            return
        for key, value in cursor:
            if not key.startswith(prefix):
                break
            yield _U64.unpack(key[:8])[0], _U32.unpack(key[8:12])[0], marshal.loads(value)

    def sent_id(self, txn: lmdb.Transaction, address: str, message_id: str) -> tuple | None:
        raw = txn.get(user_key(address, message_id)[:500], db=self.sentids)
        return marshal.loads(raw) if raw else None

    def put_sent_id(self, txn: lmdb.Transaction, address: str, message_id: str, fid: int, uid: int,
                    now: float) -> None:
        txn.put(user_key(address, message_id)[:500], marshal.dumps((fid, uid, now)), db=self.sentids)

    def prune_sent_ids(self, txn: lmdb.Transaction, older_than: float) -> None:
        stale = [k for k, v in txn.cursor(db=self.sentids) if marshal.loads(v)[2] < older_than]
        for key in stale:
            txn.delete(key, db=self.sentids)

    def prune_expunge_log(self, txn: lmdb.Transaction, older_than: float) -> int:
        """Compact the tombstones of expunges made before `older_than`.

        Per folder, the highest MODSEQ among the stale tombstones becomes the
        folder's expunge_floor and every tombstone at or below it goes (clock
        steps may leave a younger one under an older one's MODSEQ): the log
        stays complete above the floor, so VANISHED (EARLIER) for a client
        MODSEQ >= floor is exact, and below it the IMAP layer answers with the
        known-but-missing UIDs (RFC 7162 §3.2.5.2).  Returns tombstones removed.
        """
        floors: dict[int, int] = {}
        for key, value in txn.cursor(db=self.expunged):
            if marshal.loads(value) < older_than:
                fid = _U64.unpack(key[:8])[0]
                modseq = _U64.unpack(key[8:16])[0]
                if modseq > floors.get(fid, 0):
                    floors[fid] = modseq
        removed = 0
        for fid, floor in floors.items():
            removed += self.compact_tombstones(txn, fid, floor)
        return removed

    def compact_tombstones(self, txn: lmdb.Transaction, fid: int, floor: int) -> int:
        """Drop a folder's tombstones with MODSEQ <= floor and raise its
        expunge_floor to floor (both in this transaction)."""
        prefix = fid_key(fid)
        end = seq_key(fid, floor + 1, 0)
        doomed = []
        cursor = txn.cursor(db=self.expunged)
        if cursor.set_range(prefix):
            for key in cursor.iternext(values=False):
                if key[:8] != prefix or key >= end:
                    break
                doomed.append(key)
        for key in doomed:
            txn.delete(key, db=self.expunged)
        state = self.state(txn, fid)
        if state is not None and floor > state.expunge_floor:
            state.expunge_floor = floor
            self.put_state(txn, fid, state)
        return len(doomed)


class RecordEditor:
    """Edits of one folder's records inside one write transaction.

    Keeps the folder counters, the MODSEQ and expunge logs, the by-name index
    and the user's quota usage in step with every record change.  Call
    flush() before the transaction commits.
    """

    def __init__(self, index: UidIndex, txn: lmdb.Transaction, fid: int, state: FolderState):
        self.index = index
        self.txn = txn
        self.fid = fid
        self.state = state
        self._chunks: dict[int, dict[int, RecordTuple]] = {}
        self._dirty: set[int] = set()
        self._modseq: int | None = None
        self.usage_bytes = 0
        self.usage_messages = 0
        # Full-text operations for after the commit; Recycle is not searched
        # by body (issue 15: expunged messages leave the search index).
        self._fulltext_ops: list[tuple] = []
        self._searchable = index.fulltext is not None and state.name != RECYCLE

    @property
    def modseq(self) -> int:
        """The MODSEQ of this edit: one step above the folder's highest."""
        if self._modseq is None:
            self.state.modseq += 1
            self._modseq = self.state.modseq
        return self._modseq

    def _chunk(self, uid: int) -> dict[int, RecordTuple]:
        number = uid >> CHUNK_SHIFT
        chunk = self._chunks.get(number)
        if chunk is None:
            raw = self.txn.get(chunk_key(self.fid, uid), db=self.index.records_db)
            chunk = {t[0]: t for t in marshal.loads(raw)} if raw else {}
            self._chunks[number] = chunk
        return chunk

    def get(self, uid: int) -> RecordTuple | None:
        return self._chunk(uid).get(uid)

    def add(self, flags: frozenset[str], size: int, internaldate: float, base: str,
            meta: bytes | None, uid: int | None = None, copied_from: tuple[int, int] | None = None
            ) -> RecordTuple:
        """A new message with the next UID (or `uid`, when keeping one).

        meta: an encode_meta blob; its text goes to the full-text index.
        A copy's meta (from UidIndex.meta) has none: copied_from, the
        source (fid, uid), says whose full-text row to copy instead.
        """
        state = self.state
        if uid is None:
            uid = state.uidnext
        state.uidnext = max(state.uidnext, uid + 1)
        record = (uid, flags, self.modseq, size, internaldate, base)
        self._chunk(uid)[uid] = record
        self._dirty.add(uid >> CHUNK_SHIFT)
        txn, index = self.txn, self.index
        headers, structure, text = split_meta(meta)
        txn.put(msg_key(self.fid, uid), structure, db=index.meta_db)
        txn.put(msg_key(self.fid, uid), headers, db=index.headers_db)
        if self._searchable:
            if text:
                body, cut = text_of(text)
                self._fulltext_ops.append(("add", fulltext_rowid(self.fid, uid), body, int(cut)))
            elif copied_from is not None:
                self._fulltext_ops.append(("copy", fulltext_rowid(*copied_from),
                                           fulltext_rowid(self.fid, uid)))
        txn.put(fid_key(self.fid) + base.encode("utf-8"), _U32.pack(uid), db=index.names)
        txn.put(seq_key(self.fid, record[2], uid), b"", db=index.modseq)
        state.messages += 1
        state.size += size
        if "\\Seen" not in flags:
            state.unseen += 1
        self.usage_bytes += size
        self.usage_messages += 1
        return record

    def set_flags(self, record: RecordTuple, flags: frozenset[str]) -> RecordTuple:
        uid, old_flags, old_modseq = record[0], record[1], record[2]
        new = (uid, flags, self.modseq, record[3], record[4], record[5])
        self._chunk(uid)[uid] = new
        self._dirty.add(uid >> CHUNK_SHIFT)
        self.txn.delete(seq_key(self.fid, old_modseq, uid), db=self.index.modseq)
        self.txn.put(seq_key(self.fid, new[2], uid), b"", db=self.index.modseq)
        self.state.unseen += ("\\Seen" in old_flags) - ("\\Seen" in flags)
        return new

    def remove(self, record: RecordTuple, now: float) -> None:
        uid = record[0]
        chunk = self._chunk(uid)
        if chunk.pop(uid, None) is None:
            return
        self._dirty.add(uid >> CHUNK_SHIFT)
        txn, index, fid = self.txn, self.index, self.fid
        txn.delete(msg_key(fid, uid), db=index.meta_db)
        txn.delete(msg_key(fid, uid), db=index.headers_db)
        txn.delete(fid_key(fid) + record[5].encode("utf-8"), db=index.names)
        txn.delete(seq_key(fid, record[2], uid), db=index.modseq)
        txn.delete(msg_key(fid, uid), db=index.recycle)
        txn.put(seq_key(fid, self.modseq, uid), marshal.dumps(now), db=index.expunged)
        if index.fulltext is not None:
            self._fulltext_ops.append(("remove", fulltext_rowid(fid, uid)))
        state = self.state
        state.messages -= 1
        state.size -= record[3]
        if "\\Seen" not in record[1]:
            state.unseen -= 1
        self.usage_bytes -= record[3]
        self.usage_messages -= 1

    def flush(self) -> None:
        txn, index = self.txn, self.index
        for number in self._dirty:
            chunk = self._chunks[number]
            key = fid_key(self.fid) + _U32.pack(number)
            if chunk:
                txn.put(key, marshal.dumps(sorted(chunk.values())), db=index.records_db)
            else:
                txn.delete(key, db=index.records_db)
        self._dirty.clear()
        index.put_state(txn, self.fid, self.state)
        index.bump_changes(txn)
        if self.usage_bytes or self.usage_messages:
            index.add_usage(txn, self.state.address, self.usage_bytes, self.usage_messages)
            self.usage_bytes = self.usage_messages = 0
        if self._fulltext_ops:
            index.fulltext_ops(txn, self._fulltext_ops)
            self._fulltext_ops = []
