# -*- test-case-name: tests.store.test_fulltext -*-
"""The full-text index (SQLite FTS5, trigram): what goes in, what comes out,
what leaves it; and SEARCH BODY/TEXT through it on a real server."""

from __future__ import annotations

import imaplib
import os

import pytest

from tests.conftest import PASSWORD, RunningServer, wait_until
from tests.store.conftest import SyncStore, result_of
from xmail.store import index as idx
from xmail.store.fulltext import FullTextIndex, rowid
from xmail.store.reindex import reindex

ALICE = "alice@example.com"


def _message(subject: str, body: str, charset: str = "utf-8") -> bytes:
    return (f"From: bob@example.com\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset={charset}\r\n"
            f"Content-Transfer-Encoding: 8bit\r\n\r\n{body}\r\n").encode()


# --- the index on its own ----------------------------------------------------------------


@pytest.fixture
def fts(tmp_path):
    index = FullTextIndex(str(tmp_path / "fulltext.sqlite"), threaded=False)
    yield index
    index.close()


def test_substrings_in_any_script_and_of_any_length(fts: FullTextIndex) -> None:
    fts.add_text(7, 1, "请查收本季度的中文报告\nthanks", False)
    fts.add_text(7, 2, 'say "hello" to 100% of the world', False)
    fts.add_text(8, 1, "中文 in another folder", False)
    uids = [1, 2, 3]
    assert fts.search(7, "中文报告", uids) == ({1}, {3})  # 3 is not indexed: undecided
    assert fts.search(7, "中文", uids) == ({1}, {3})  # two characters: no trigram, instr
    assert fts.search(7, "报", uids) == ({1}, {3})
    assert fts.search(7, '"hello"', uids) == ({2}, {3})  # quotes are text, not syntax
    assert fts.search(7, "100%", uids) == ({2}, {3})
    assert fts.search(7, "e w", uids) == ({2}, {3})
    fts.add_text(7, 4, "a*b?c[d] x_y", False)
    assert fts.search(7, "*b?c[", [4]) == ({4}, set())  # GLOB's own characters match themselves
    assert fts.search(7, "x_y", [2, 4]) == ({4}, set())
    assert fts.search(7, "a?b", [4]) == (set(), set())
    assert fts.search(7, "nowhere", uids) == (set(), {3})
    assert fts.search(8, "中文", [1]) == ({1}, set())  # folders do not leak into each other


def test_a_cut_text_without_a_match_is_undecided(fts: FullTextIndex) -> None:
    fts.add_text(1, 1, "the first 256 kB of a long text", True)
    assert fts.search(1, "first", [1]) == ({1}, set())
    assert fts.search(1, "the end", [1]) == (set(), {1})


def test_threaded_writes_land_after_flush(tmp_path) -> None:
    index = FullTextIndex(str(tmp_path / "f.sqlite"), threaded=True)
    try:
        index.submit([("add", rowid(1, n), f"message number {n}", 0) for n in range(1, 1001)])
        index.flush()
        assert index.indexed(1) == set(range(1, 1001))
        assert index.search(1, "number 999", range(1, 1001)) == ({999}, set())
    finally:
        index.close()


# --- the store keeps it in step --------------------------------------------------------------


def test_lmdb_keeps_no_body_text(sync: SyncStore) -> None:
    inbox = sync.mailbox().folder("INBOX")
    body = "quarterly figures " * 2000  # 36 kB of text
    result_of(inbox.append(_message("big", body)))
    with sync.env.read() as txn:
        structure = txn.get(idx.msg_key(inbox.fid, 1), db=sync.env.db("store.meta"))
    assert len(structure) < 1024
    assert b"quarterly" not in structure
    assert inbox.body_search("quarterly figures", [1]) == ({1}, set())


def test_expunge_move_copy_and_folder_delete_keep_it_in_step(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    for i in range(3):
        result_of(inbox.append(_message(f"m{i}", f"项目 alpha number {i}")))
    fts = sync.store.fulltext
    assert fts.indexed(inbox.fid) == {1, 2, 3}
    # Expunge: into Recycle, which the full-text index does not hold.
    result_of(inbox.expunge([1]))
    recycle = mailbox.folder("Recycle")
    assert fts.indexed(inbox.fid) == {2, 3}
    assert fts.indexed(recycle.fid) == set()
    # Copy and move carry the text to the new UID.
    result_of(mailbox.create_folder("Projects"))
    projects = mailbox.folder("Projects")
    result_of(inbox.copy([2], "Projects"))
    result_of(inbox.move([3], "Projects"))
    assert fts.indexed(inbox.fid) == {2}
    assert fts.indexed(projects.fid) == {1, 2}
    assert projects.body_search("number 2", [1, 2]) == ({2}, set())
    assert projects.body_search("项目", [1, 2]) == ({1, 2}, set())
    # Deleting the folder empties its rows (its mail goes to Recycle).
    result_of(mailbox.delete_folder("Projects"))
    assert fts.indexed(projects.fid) == set()
    # Expunge inside Recycle deletes for good; nothing was indexed there.
    assert recycle.body_search("项目", [r.uid for r in recycle.records()])[0] == set()


def test_reindex_repopulates_the_fulltext_index(sync: SyncStore) -> None:
    inbox = sync.mailbox().folder("INBOX")
    for i in range(3):
        result_of(inbox.append(_message(f"m{i}", f"body {i} 中文")))
    sync.store.fulltext.clear()
    assert inbox.body_search("中文", [1, 2, 3]) == (set(), {1, 2, 3})
    result_of(reindex(sync.store, ALICE))
    assert inbox.body_search("中文", [1, 2, 3]) == ({1, 2, 3}, set())


# --- the daemon: IMAP SEARCH through it -------------------------------------------------------


def _search(imap: imaplib.IMAP4, *criteria: str) -> list[int]:
    status, data = imap.uid("SEARCH", "CHARSET", "UTF-8", *criteria)
    assert status == "OK"
    return [int(x) for x in data[0].split()]


def test_imap_search_body_and_text_use_the_fulltext_index(server: RunningServer) -> None:
    store = server.ctx.store
    bodies = ["请查收本季度的中文报告", "plain english only", "另一封中文邮件"]
    for i, body in enumerate(bodies):
        server.call(store.deliver, ALICE, _message(f"m{i}", body))
    inbox = server.call(lambda: store.mailbox(ALICE).folder("INBOX"))
    wait_until(lambda: store.fulltext.indexed(inbox.fid) == {1, 2, 3}, what="full-text rows written")
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    try:
        imap.login(ALICE, PASSWORD)
        imap._mode_utf8()  # send the UTF-8 search strings as they are
        imap.select("INBOX")
        assert _search(imap, "BODY", '"中文"') == [1, 3]
        assert _search(imap, "BODY", '"中文报告"') == [1]
        assert _search(imap, "TEXT", '"ENGLISH"') == [2]
        assert _search(imap, "BODY", '"m1"') == []  # the subject is not the body
        assert _search(imap, "TEXT", '"m1"') == [2]  # ... but it is text
        # Expunged: gone from the folder and from the full-text index.
        imap.uid("STORE", "1", "+FLAGS.SILENT", "(\\Deleted)")
        imap.expunge()
        wait_until(lambda: store.fulltext.indexed(inbox.fid) == {2, 3}, what="row removed")
        assert _search(imap, "BODY", '"中文"') == [3]
        # A message the index lost is still found (from its file), and the
        # search puts it back.
        store.fulltext.submit([("remove", rowid(inbox.fid, 3))])
        wait_until(lambda: store.fulltext.indexed(inbox.fid) == {2}, what="row dropped")
        assert _search(imap, "BODY", '"邮件"') == [3]
        wait_until(lambda: store.fulltext.indexed(inbox.fid) == {2, 3}, what="row healed")
    finally:
        imap.logout()


def test_fulltext_file_lives_with_the_index(server: RunningServer) -> None:
    path = server.ctx.store.fulltext.path
    assert os.path.dirname(path) == server.settings.path("index")
    server.call(server.ctx.store.deliver, ALICE, _message("x", "y"))
    wait_until(lambda: os.path.exists(path), what="fulltext file")
    assert os.stat(path).st_mode & 0o077 == 0
