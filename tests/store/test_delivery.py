# -*- test-case-name: tests.store.test_delivery -*-
"""The durable delivery path: where files land, what their names say, when
the index learns of them."""

from __future__ import annotations

import os

import pytest

from tests.store.conftest import SyncStore, result_of
from xmail.store import maildir
from xmail.store.delivery import TRACE_ALLOWANCE
from xmail.store.interfaces import MessageTooLarge, NoSuchFolder

MESSAGE = b"From: a@example.org\nSubject: hello\nMessage-ID: <m1@example.org>\n\nline 1\nline 2\n"


def _entries(path: str) -> list[str]:
    return sorted(os.listdir(path))


def test_append_lands_in_cur_with_flags_and_size_and_tmp_is_empty(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    result = result_of(inbox.append(MESSAGE, ["\\Seen", "\\Flagged"]))
    assert result.uid == 1 and not result.deduplicated
    assert _entries(os.path.join(mailbox.root, "tmp")) == []
    assert _entries(os.path.join(mailbox.root, "new")) == []
    (entry,) = _entries(os.path.join(mailbox.root, "cur"))
    record = inbox.record(1)
    assert entry == f"{record.filename}:2,FS"
    # Maildir unique name: time.M<usec>P<pid>Q<n>R<random>.host,S=<size>
    assert f"P{os.getpid()}Q" in record.filename
    crlf = MESSAGE.replace(b"\n", b"\r\n")
    assert record.filename.endswith(f",S={len(crlf)}")
    assert record.size == len(crlf)
    with inbox.open_message(1) as f:
        assert f.read() == crlf
    assert inbox.message_path(1) == os.path.join(mailbox.root, "cur", entry)


def test_flags_and_keywords_change_by_rename(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    result_of(inbox.append(MESSAGE))
    cur = os.path.join(mailbox.root, "cur")
    base = inbox.record(1).filename
    assert _entries(cur) == [base + ":2,"]
    changed, refused = result_of(inbox.set_flags([1], ["\\Answered", "$Junk", "\\Deleted"], "add"))
    assert refused == [] and changed[0].flags == {"\\Answered", "$Junk", "\\Deleted"}
    # Dovecot-style keyword letter a = first keyword of this folder.
    assert _entries(cur) == [base + ":2,RTa"]
    assert maildir.read_keywords_file(mailbox.root) == ["$Junk"]
    result_of(inbox.set_flags([1], ["\\Deleted", "$Junk"], "remove"))
    assert _entries(cur) == [base + ":2,R"]
    result_of(inbox.set_flags([1], ["\\Seen", "\\Draft", "$Forwarded"], "set"))
    assert _entries(cur) == [base + ":2,DPS"]
    with inbox.open_message(1) as f:
        assert f.read().startswith(b"From: a@example.org\r\n")


def test_modseq_and_unchangedsince(sync: SyncStore) -> None:
    inbox = sync.mailbox().folder("INBOX")
    result_of(inbox.append(MESSAGE))
    result_of(inbox.append(MESSAGE))
    first = inbox.records()
    changed, refused = result_of(inbox.set_flags([1, 2], ["\\Seen"], "add", unchanged_since=first[0].modseq))
    assert [r.uid for r in changed] == [1] and refused == [2]
    assert changed[0].modseq > first[1].modseq
    assert inbox.status().highestmodseq == changed[0].modseq
    # No change, no new MODSEQ (RFC 7162 §3.1.3).
    changed, _ = result_of(inbox.set_flags([1], ["\\Seen"], "add"))
    assert changed == []


def test_status_counters(sync: SyncStore) -> None:
    inbox = sync.mailbox().folder("INBOX")
    for flags in ([], ["\\Seen"], []):
        result_of(inbox.append(MESSAGE, flags))
    status = inbox.status()
    size = len(MESSAGE.replace(b"\n", b"\r\n"))
    assert (status.messages, status.unseen, status.uidnext, status.size) == (3, 2, 4, 3 * size)
    result_of(inbox.set_flags([1], ["\\Seen"], "add"))
    assert inbox.status().unseen == 1
    result_of(inbox.expunge([2]))
    status = inbox.status()
    assert (status.messages, status.unseen, status.uidnext, status.size) == (2, 1, 4, 2 * size)


def test_append_from_file_copies_it(sync: SyncStore, tmp_path) -> None:
    spool = tmp_path / "spooled"
    spool.write_bytes(MESSAGE)
    inbox = sync.mailbox().folder("INBOX")
    result = result_of(inbox.append(str(spool), (), 1_700_000_000.0))
    assert spool.exists()
    record = inbox.record(result.uid)
    assert record.internaldate == 1_700_000_000.0
    with inbox.open_message(result.uid) as f:
        assert f.read() == MESSAGE.replace(b"\n", b"\r\n")


def test_meta_cached_at_delivery(sync: SyncStore) -> None:
    inbox = sync.mailbox().folder("INBOX")
    result_of(inbox.append(MESSAGE))
    meta = inbox.meta(1)
    assert {k.lower(): v for k, v in meta.headers.items()}.get("subject") == "hello"


def test_too_large_refused_and_nothing_left_behind(tmp_path) -> None:
    store = SyncStore(str(tmp_path / "d"), max_message_size=100)
    try:
        mailbox = store.mailbox()
        inbox = mailbox.folder("INBOX")
        # The limit leaves room for the trace fields the server adds itself.
        limit = 100 + TRACE_ALLOWANCE
        with pytest.raises(MessageTooLarge):
            result_of(inbox.append(b"x" * (limit + 1)))
        with pytest.raises(MessageTooLarge):
            # Bare LFs become CRLF: the limit counts the stored size.
            result_of(inbox.append(b"\n" * (limit // 2 + 1)))
        assert _entries(os.path.join(mailbox.root, "cur")) == []
        assert _entries(os.path.join(mailbox.root, "tmp")) == []
    finally:
        store.close()


def test_deliver_provisions_and_unknown_folder_fails(sync: SyncStore) -> None:
    result = result_of(sync.store.deliver("New.User@Example.com", MESSAGE))
    assert result.uid == 1
    mailbox = sync.store.mailbox("new.user@example.com")
    assert [f.name for f in mailbox.list_folders()] == [
        "INBOX", "Archive", "Drafts", "Junk", "Recycle", "Sent", "Trash"]
    with pytest.raises(NoSuchFolder):
        result_of(sync.store.deliver("new.user@example.com", MESSAGE, folder="Nope"))


def test_reactor_mode_appends_concurrently(threaded) -> None:
    from twisted.internet import defer

    mailbox = threaded.mailbox()
    inbox = threaded.call(mailbox.folder, "INBOX")

    def many():
        return defer.gatherResults([inbox.append(MESSAGE + str(i).encode()) for i in range(50)])

    results = threaded.call(many)
    assert sorted(r.uid for r in results) == list(range(1, 51))
    assert len(os.listdir(os.path.join(mailbox.root, "cur"))) == 50
    assert os.listdir(os.path.join(mailbox.root, "tmp")) == []
    assert threaded.call(inbox.status).messages == 50


def test_quick_flag_flips_keep_exactly_one_file(threaded) -> None:
    """A -> B -> A inside one group commit must not lose the file."""
    from twisted.internet import defer

    mailbox = threaded.mailbox()
    inbox = threaded.call(mailbox.folder, "INBOX")
    threaded.call(inbox.append, MESSAGE)

    def flips():
        return defer.gatherResults([inbox.set_flags([1], ["\\Seen"], "add" if i % 2 == 0 else "remove")
                                    for i in range(21)])

    threaded.call(flips)
    threaded.call(threaded.store.names_retired)  # the old names' clean-up has run
    cur = os.path.join(mailbox.root, "cur")
    assert os.listdir(cur) == [os.path.basename(threaded.call(inbox.message_path, 1))]
    assert threaded.call(inbox.record, 1).flags == {"\\Seen"}
    with threaded.call(inbox.open_message, 1) as f:
        assert f.read().startswith(b"From: a@example.org\r\n")


def test_order_of_durable_steps(sync: SyncStore, monkeypatch) -> None:
    """tmp (O_EXCL) -> fsync file -> link into cur/ -> unlink tmp -> fsync cur/ -> index commit."""
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    steps: list[str] = []
    real_open, real_fsync, real_link, real_unlink = os.open, os.fsync, os.link, os.unlink
    fd_paths: dict[int, str] = {}

    def traced_open(path, flags, *args):
        fd = real_open(path, flags, *args)
        fd_paths[fd] = os.fspath(path)
        if flags & os.O_CREAT:
            assert flags & os.O_EXCL
            steps.append("create " + os.path.basename(os.path.dirname(path)))
        return fd

    def traced_fsync(fd):
        path = fd_paths.get(fd, "?")
        steps.append("fsync dir " + os.path.basename(path) if os.path.isdir(path) else "fsync file")
        return real_fsync(fd)

    def traced_link(src, dest):
        where = [os.path.basename(os.path.dirname(p)) for p in (src, dest)]
        steps.append(f"link {where[0]}->{where[1]}")
        return real_link(src, dest)

    def traced_unlink(path):
        steps.append("unlink " + os.path.basename(os.path.dirname(path)))
        return real_unlink(path)

    real_write_sync = sync.env.write_sync

    def traced_write_sync(fn, *, durable=True):
        result = real_write_sync(fn, durable=durable)
        steps.append("index commit" if durable else "index commit, not durable")
        return result

    monkeypatch.setattr(os, "open", traced_open)
    monkeypatch.setattr(os, "fsync", traced_fsync)
    monkeypatch.setattr(os, "link", traced_link)
    monkeypatch.setattr(os, "unlink", traced_unlink)
    monkeypatch.setattr(sync.env, "write_sync", traced_write_sync)
    result_of(inbox.append(MESSAGE, ["\\Seen"]))
    monkeypatch.undo()
    assert steps == ["create tmp", "fsync file", "link tmp->cur", "unlink tmp", "fsync dir cur",
                     "index commit"]


def test_appends_queued_together_share_the_append_threads_batch(tmp_path, monkeypatch) -> None:
    """Many appends started in one reactor turn: each gets its own UID and
    file, one that fails on the append thread fails alone, and the rest
    are durable and indexed."""
    from twisted.internet import defer

    from tests.store.conftest import ReactorStore
    from xmail.store import delivery, runner

    store = ReactorStore(str(tmp_path / "data"))
    try:
        inbox = store.mailbox().folder("INBOX")
        batches = []
        real = runner.ThreadedRunner._append_batch

        def spy(self, batch):
            batches.append(len(batch))
            return real(self, batch)

        monkeypatch.setattr(runner.ThreadedRunner, "_append_batch", spy)

        def start_all():
            ds = [inbox.append(b"Subject: m%d\r\n\r\nbody %d\r\n" % (i, i)) for i in range(40)]
            # No such folder: found out on the append thread, in the batch.
            ds.insert(20, delivery.append(store.store, "alice@example.com", 999999, b"x\r\n",
                                          frozenset(), 0.0))
            return defer.DeferredList(ds, consumeErrors=True)

        outcomes = store.call(start_all)
        failed = [value for ok, value in outcomes if not ok]
        uids = [value.uid for ok, value in outcomes if ok]
        assert len(failed) == 1 and failed[0].check(NoSuchFolder)
        assert sorted(uids) == list(range(1, 41))
        assert max(batches) > 1  # grouped, not one thread trip each
        assert len(store.call(inbox.records)) == 40
        cur = os.path.join(store.store.user_root("alice@example.com"), "cur")
        assert len(os.listdir(cur)) == 40
        assert os.listdir(os.path.join(store.store.user_root("alice@example.com"), "tmp")) == []
    finally:
        store.close()
