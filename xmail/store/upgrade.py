# -*- test-case-name: tests.store.test_upgrade -*-
"""Checking the index format at open; converting or rebuilding it.

The store's databases record their format in db.formats (index.FORMAT_NAME
-> index.format_tag(): the schema number and the marshal format of the
Python that wrote them, xmail.db.formats).  `ensure_format` runs when a
MailStore is made (daemon worker or xmailctl), before anything reads the
index:

  same tag                    nothing to do
  no tag, no folders          a new index: the tag is written
  a schema we know how to     converted in one write transaction: every
  convert, values readable    marshal value re-encoded by this Python,
                              schema 1's text digests moved from store.meta
                              to the full-text index
  anything else (a newer      rebuilt from the Maildir: the store's
  schema, values this Python  databases are emptied and `reindex` runs
  cannot read)                (new UIDVALIDITYs, RFC 3501 §2.3.1.1, so
                              clients resynchronise; DESIGN: what the
                              Maildir holds can be rebuilt)

Processes racing to open an old index serialise on LMDB's writer lock; the
first converts, the others find the new tag.
"""

from __future__ import annotations

import marshal
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

from xmail.db import formats
from xmail.store import index as idx
from xmail.store.fulltext import rowid
from xmail.store.names import RECYCLE

_log = Logger()

# Databases whose values are plain marshal dumps, and those packed with a
# one-byte tag (index._pack: b"M" marshal, b"J" JSON).
_MARSHAL_DBS = ("store.users", "store.fstate", "store.records", "store.expunged", "store.recycle",
                "store.sentids")
_PACKED_DBS = ("store.headers",)
STORE_DBS = ("store.users", "store.folders", "store.fstate", "store.records", "store.meta",
             "store.headers", "store.names", "store.modseq", "store.expunged", "store.recycle",
             "store.sentids", "store.subs", "store.counters")


class Unreadable(Exception):
    """A value this Python cannot decode: convert impossible, rebuild."""


def parse_tag(tag: str | None) -> tuple[int, str | None]:
    """(schema, codec) of a tag; no tag is schema 1 (before tags existed),
    written by this codec as far as anyone knows.  Unparsable: schema -1."""
    if tag is None:
        return 1, None
    schema, sep, codec = tag.partition("; ")
    if not sep or not schema.startswith("schema ") or not schema[7:].isdigit():
        return -1, None
    return int(schema[7:]), codec


def ensure_format(store: Any, rebuild_with: Callable[[], Any] | None = None) -> str:
    """Bring the index to this version's format -> "current", "new",
    "converted" or "rebuilt".  rebuild_with() returns a synchronous store
    on the same environment to reindex with (default: store itself, which
    must then be synchronous)."""
    env = store.env
    current = idx.format_tag()
    with env.read() as txn:
        if formats.read_tag(env, txn, idx.FORMAT_NAME) == current:
            return "current"

    def decide(txn: Any) -> str:
        tag = formats.read_tag(env, txn, idx.FORMAT_NAME)
        if tag == current:
            return "current"
        if not _has_folders(env, txn):
            formats.write_tag(env, txn, idx.FORMAT_NAME, current)
            return "new"
        schema, _codec = parse_tag(tag)
        if schema not in (1, idx.SCHEMA):
            return "rebuild"
        try:
            moved = _convert(store, txn, schema)
        except Unreadable:
            return "rebuild"
        formats.write_tag(env, txn, idx.FORMAT_NAME, current)
        # The text of schema 1's digests goes to the full-text index once
        # this transaction commits.
        store.index.fulltext_ops(txn, moved)
        return "converted"

    outcome = env.write_sync(decide)
    if outcome == "rebuild":
        _rebuild(store, rebuild_with)
        outcome = "rebuilt"
    if outcome != "current":
        _log.info("index format {tag}: {outcome}", tag=current, outcome=outcome)
    return outcome


def _has_folders(env: Any, txn: Any) -> bool:
    cursor = txn.cursor(db=env.db("store.fstate"))
    return cursor.first()


def _reload(raw: bytes) -> bytes:
    try:
        return marshal.dumps(marshal.loads(raw))
    except (ValueError, EOFError, TypeError) as e:
        raise Unreadable(str(e)) from None


def _repack(raw: bytes) -> bytes:
    if raw[:1] == b"M":
        return b"M" + _reload(raw[1:])
    return raw  # JSON (or empty): no codec of Python's


def _convert(store: Any, txn: Any, schema: int) -> list[tuple]:
    """Re-encode every value in txn; from schema 1 also split the text
    digests out of store.meta.  -> full-text operations for after commit.
    Raises Unreadable (the transaction is then aborted by the caller's
    rebuild path: nothing is half-converted)."""
    env = store.env
    for name in _MARSHAL_DBS + _PACKED_DBS:
        db = env.db(name)
        convert = _reload if name in _MARSHAL_DBS else _repack
        updates = [(bytes(key), convert(bytes(value))) for key, value in txn.cursor(db=db)]
        for key, value in updates:
            txn.put(key, value, db=db)
    meta_db = env.db("store.meta")
    moved: list[tuple] = []
    recycle_fids = set()
    for _key, value in txn.cursor(db=env.db("store.fstate")):
        state = idx.FolderState.decode(bytes(value))
        if state.name == RECYCLE:
            recycle_fids.add(_key)
    updates = []
    for key, value in txn.cursor(db=meta_db):
        key, value = bytes(key), bytes(value)
        if schema == 1:
            # Schema 1: _pack((structure, text)).
            try:
                structure, text = idx._unpack(_repack(value), ({}, ""))
            except (ValueError, TypeError) as e:  # JSON or shape errors
                raise Unreadable(f"store.meta: {e}") from None
            updates.append((key, idx._pack(structure)))
            if text and key[:8] not in recycle_fids:
                fid = idx._U64.unpack(key[:8])[0]
                uid = idx._U32.unpack(key[8:12])[0]
                moved.append(("add", rowid(fid, uid), text, int(bool(structure.get("text_cut")))))
        else:
            updates.append((key, _repack(value)))
    for key, value in updates:
        txn.put(key, value, db=meta_db)
    return moved


def _rebuild(store: Any, rebuild_with: Callable[[], Any] | None) -> None:
    """Empty the store's databases and the full-text index, then reindex
    every user from the Maildir."""
    from xmail.store.reindex import reindex

    env = store.env

    def clear(txn: Any) -> None:
        for name in STORE_DBS:
            txn.drop(env.db(name), delete=False)
        formats.write_tag(env, txn, idx.FORMAT_NAME, idx.format_tag())

    _log.warn("index format is unknown or unreadable by this Python: rebuilding from the Maildir")
    env.write_sync(clear)
    store.fulltext.clear()
    sync_store = rebuild_with() if rebuild_with is not None else store
    out: list[Any] = []
    reindex(sync_store, None).addBoth(out.append)
    if out and hasattr(out[0], "raiseException"):
        out[0].raiseException()
