# -*- test-case-name: tests.store.test_reindex -*-
"""Reindex from the Maildir, and mail dropped into new/ by another program."""

from __future__ import annotations

import os
import shutil

from tests.store.conftest import SyncStore, result_of
from xmail.store import maildir


def _drop(folder_dir: str, name: str, data: bytes) -> str:
    """What another MDA does: write in tmp/, rename into new/."""
    tmp = os.path.join(folder_dir, "tmp", name)
    with open(tmp, "wb") as f:
        f.write(data)
    dest = os.path.join(folder_dir, "new", name)
    os.rename(tmp, dest)
    return dest


def test_reindex_keeps_uids_where_names_match(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    for i in range(4):
        result_of(inbox.append(b"Subject: %d\r\n\r\n" % i, ["\\Seen"] if i == 0 else []))
    result_of(inbox.set_flags([2], ["$label"], "add"))
    before = {r.uid: r for r in inbox.records()}
    cur = os.path.join(mailbox.root, "cur")
    # Another Maildir reader: deletes message 3, flags message 4 by renaming.
    os.unlink(inbox.message_path(3))
    path4 = inbox.message_path(4)
    os.rename(path4, path4.replace(":2,", ":2,RS"))
    # ... and a foreign file with bare LF and one corrupt entry appear in cur/.
    with open(os.path.join(cur, "1600000000.foreign.host:2,F"), "wb") as f:
        f.write(b"Subject: foreign\n\nbare lf\n")
    open(os.path.join(cur, "1600000001.empty.host:2,"), "wb").close()
    os.mkdir(os.path.join(cur, "not-a-file"))

    counts = result_of(sync.store.reindex("alice@example.com"))
    assert counts == {"kept": 3, "new": 1, "removed": 1, "skipped": 2}
    after = {r.uid: r for r in inbox.records()}
    assert set(after) == {1, 2, 4, 5}
    for uid in (1, 2):
        assert after[uid] == before[uid]  # same UID, name, flags, MODSEQ
    assert after[4].filename == before[4].filename
    assert after[4].flags == {"\\Answered", "\\Seen"}
    assert after[5].flags == {"\\Flagged"}
    with inbox.open_message(5) as f:
        assert f.read() == b"Subject: foreign\r\n\r\nbare lf\r\n"
    status = inbox.status()
    assert (status.messages, status.unseen) == (4, 2)
    assert mailbox.quota().messages_used == 4


def test_reindex_after_losing_the_index(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    result_of(mailbox.create_folder("Lists/python.org"))
    target = mailbox.folder("Lists/python.org")
    result_of(target.append(b"Subject: x\r\n\r\n", ["\\Seen", "keep-me"]))
    result_of(mailbox.folder("INBOX").append(b"Subject: y\r\n\r\n"))
    sync.close()
    shutil.rmtree(sync.settings.path("index"))
    store = sync.open()
    counts = result_of(store.reindex())
    assert counts == {"kept": 0, "new": 2, "removed": 0, "skipped": 0}
    mailbox = store.mailbox("alice@example.com")
    assert "Lists/python.org" in [f.name for f in mailbox.list_folders()]
    assert mailbox.folder_by_special_use("\\Sent").name == "Sent"
    (record,) = mailbox.folder("Lists/python.org").records()
    assert record.flags == {"\\Seen", "keep-me"}  # keyword from dovecot-keywords
    # A second run changes nothing.
    assert result_of(store.reindex()) == {"kept": 2, "new": 0, "removed": 0, "skipped": 0}


def test_drop_in_picked_up_when_folder_is_opened(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    mailbox.folder("INBOX")  # opened once: new/ seen empty
    _drop(mailbox.root, "1700000000.1234.otherhost", b"Subject: dropped\n\nhi\n")
    _drop(mailbox.root, "1700000001.1235.otherhost:2,S", b"Subject: seen\r\n\r\n")
    _drop(mailbox.root, "1700000002.1236.otherhost", b"")  # corrupt: skipped, stays
    inbox = mailbox.folder("INBOX")
    inbox.poll_changes()
    records = inbox.records()
    assert [r.flags for r in records] == [set(), {"\\Seen"}]
    with inbox.open_message(records[0].uid) as f:
        assert f.read() == b"Subject: dropped\r\n\r\nhi\r\n"
    assert os.listdir(os.path.join(mailbox.root, "new")) == ["1700000002.1236.otherhost"]
    for record in records:  # now in cur/ with flags in the name
        assert os.path.dirname(inbox.message_path(record.uid)) == os.path.join(mailbox.root, "cur")
    assert inbox.status().messages == 2


def test_drop_in_detected_by_running_store_and_listener_hears(threaded) -> None:
    from tests.store.test_notify import Recorder

    mailbox = threaded.mailbox()
    inbox = threaded.call(mailbox.folder, "INBOX")
    # new/ last changed long ago: the drop below moves its mtime for sure
    # (a drop in the same coarse clock tick as the folder's creation would
    # not), without waiting for the clock to move on.
    os.utime(os.path.join(mailbox.root, "new"), (1_000_000_000, 1_000_000_000))
    listener = Recorder()
    threaded.call(inbox.subscribe_changes, listener)
    _drop(mailbox.root, "1700000000.99.elsewhere", b"Subject: hello from procmail\n\nx\n")
    changes = listener.wait_for(lambda c: c.new_uids)
    assert changes.new_uids == (1,)
    assert threaded.call(inbox.status).messages == 1
    assert os.listdir(os.path.join(mailbox.root, "new")) == []
    with threaded.call(inbox.open_message, 1) as f:
        assert b"\n" not in f.read().replace(b"\r\n", b"")
    threaded.call(inbox.unsubscribe_changes, listener)


def test_unique_names_are_unique_and_carry_size() -> None:
    names = {maildir.unique_name(10) for _ in range(1000)}
    assert len(names) == 1000
    assert all(n.endswith(",S=10") and "/" not in n and ":" not in n for n in names)


def test_reindex_resolves_two_names_of_one_base(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    result_of(inbox.append(b"Subject: a\r\n\r\n", ["\\Seen"]))
    result_of(inbox.append(b"Subject: b\r\n\r\n"))
    cur = os.path.join(mailbox.root, "cur")
    one, two = inbox.message_path(1), inbox.message_path(2)
    # A crash between linking the new name and removing the old one ...
    os.link(one, one.replace(":2,S", ":2,FS"))
    # ... and a different file that happens to share message 2's base name.
    with open(two.replace(":2,", ":2,T"), "wb") as f:
        f.write(b"Subject: impostor\r\n\r\n")
    counts = result_of(sync.store.reindex("alice@example.com"))
    assert counts == {"kept": 2, "new": 1, "removed": 0, "skipped": 0}
    assert len(os.listdir(cur)) == 3
    assert inbox.record(1).flags == {"\\Seen"}
    assert [r.uid for r in inbox.records()] == [1, 2, 3]
    with inbox.open_message(3) as f:
        assert f.read() == b"Subject: impostor\r\n\r\n"
    assert inbox.record(3).flags == {"\\Deleted"}
