# -*- test-case-name: tests.store.test_upgrade -*-
"""Issue 14 structure 5: the index's values carry a format tag, and an index
written in another format is converted or rebuilt when a store opens it."""

from __future__ import annotations

import marshal

from tests.store.conftest import SyncStore, result_of
from xmail.db import formats
from xmail.store import index as idx
from xmail.store.upgrade import ensure_format, parse_tag

ALICE = "alice@example.com"


def _message(subject: str, body: str) -> bytes:
    return f"From: bob@example.com\r\nTo: {ALICE}\r\nSubject: {subject}\r\n\r\n{body}\r\n".encode()


def _tag(sync: SyncStore) -> str | None:
    with sync.env.read() as txn:
        return formats.read_tag(sync.env, txn, idx.FORMAT_NAME)


def _set_tag(sync: SyncStore, tag: str | None) -> None:
    def job(txn):
        db = sync.env.db(formats.FORMATS_DB)
        if tag is None:
            txn.delete(idx.FORMAT_NAME.encode(), db=db)
        else:
            txn.put(idx.FORMAT_NAME.encode(), tag.encode(), db=db)
    sync.env.write_sync(job)


def _fill(sync: SyncStore) -> object:
    inbox = sync.mailbox().folder("INBOX")
    result_of(inbox.append(_message("one", "the quarterly 报告 is attached"), ["\\Seen"]))
    result_of(inbox.append(_message("two", "nothing to see here")))
    return inbox


def test_a_new_index_is_tagged_with_this_format(sync: SyncStore) -> None:
    assert _tag(sync) == idx.format_tag()
    assert parse_tag(_tag(sync)) == (idx.SCHEMA, formats.codec_tag())
    assert ensure_format(sync.store) == "current"


def test_schema_1_index_is_converted_and_its_text_moves_to_fulltext(sync: SyncStore) -> None:
    inbox = _fill(sync)
    before = inbox.records()
    # Make it what a schema 1 index was: no tag, the text digest inside
    # store.meta, nothing in the full-text index.
    meta_db = sync.env.db("store.meta")

    def to_schema_1(txn):
        for key, value in list(txn.cursor(db=meta_db)):
            structure = idx._unpack(bytes(value), {})
            uid = idx._U32.unpack(bytes(key)[8:12])[0]
            text = "the quarterly 报告 is attached\n" if uid == 1 else "nothing to see here\n"
            txn.put(bytes(key), idx._pack((structure, text)), db=meta_db)
    sync.env.write_sync(to_schema_1)
    _set_tag(sync, None)
    sync.store.fulltext.clear()
    assert sync.store.fulltext.indexed(inbox.fid) == set()

    store = sync.reopen()
    assert _tag(sync) == idx.format_tag()
    inbox = store.mailbox(ALICE).folder("INBOX")
    assert inbox.records() == before
    assert inbox.meta(1).structure["body"]  # the structure survived the split
    assert inbox.meta(1).text == ""
    with sync.env.read() as txn:  # store.meta holds the structure alone now
        raw = txn.get(idx.msg_key(inbox.fid, 1), db=sync.env.db("store.meta"))
        assert isinstance(idx._unpack(raw, None), dict)
    assert inbox.body_search("报告", [1, 2]) == ({1}, set())
    assert inbox.body_search("quarterly", [1, 2]) == ({1}, set())


def test_other_python_marshal_tag_is_converted_in_place(sync: SyncStore) -> None:
    inbox = _fill(sync)
    before = inbox.records()
    _set_tag(sync, f"schema {idx.SCHEMA}; marshal{marshal.version}/py3.10")
    store = sync.reopen()
    assert _tag(sync) == idx.format_tag()
    assert store.mailbox(ALICE).folder("INBOX").records() == before


def test_unknown_format_is_rebuilt_from_the_maildir(sync: SyncStore) -> None:
    inbox = _fill(sync)
    filenames = [r.filename for r in inbox.records()]
    _set_tag(sync, "schema 99; marshal9/py4.0")
    store = sync.reopen()
    assert _tag(sync) == idx.format_tag()
    inbox = store.mailbox(ALICE).folder("INBOX")
    records = inbox.records()
    # Every message is back (adopted in file-name order, not delivery order).
    assert sorted(r.filename for r in records) == sorted(filenames)
    first = next(r for r in records if r.filename == filenames[0])
    assert first.flags == frozenset({"\\Seen"})  # flags from the file names
    assert inbox.body_search("报告", [r.uid for r in records]) == ({first.uid}, set())


def test_unreadable_values_are_rebuilt_not_half_converted(sync: SyncStore) -> None:
    inbox = _fill(sync)
    filenames = [r.filename for r in inbox.records()]
    records_db = sync.env.db("store.records")

    def corrupt(txn):
        for key, _value in list(txn.cursor(db=records_db)):
            txn.put(bytes(key), b"\xfe\xfe not marshal", db=records_db)
    sync.env.write_sync(corrupt)
    _set_tag(sync, f"schema {idx.SCHEMA}; marshal{marshal.version + 1}/py3.99")
    store = sync.reopen()
    assert _tag(sync) == idx.format_tag()
    assert sorted(r.filename for r in store.mailbox(ALICE).folder("INBOX").records()) == sorted(filenames)
