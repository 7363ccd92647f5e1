"""The in-memory store shipped for tests (xmail/store/memory.py) conforms
to the store interfaces, and behaves as the protocols expect of a folder."""

from __future__ import annotations

from typing import Any

import pytest
from zope.interface.verify import verifyClass, verifyObject

from xmail.store.interfaces import (
    FolderChanges,
    FolderExists,
    IFolder,
    IMailbox,
    NoSuchFolder,
    NoSuchMessage,
)
from xmail.store.memory import MemoryFolder, MemoryMailbox

MESSAGE = b"From: a@example.com\nSubject: hello\n\nbody\n"


def result(d: Any) -> Any:
    """The result of an already-fired Deferred (the memory store's are)."""
    out: list[Any] = []
    d.addBoth(out.append)
    (value,) = out
    if hasattr(value, "raiseException"):
        value.raiseException()
    return value


def test_memory_folder_provides_ifolder() -> None:
    assert verifyClass(IFolder, MemoryFolder)
    assert verifyObject(IFolder, MemoryFolder())


def test_memory_mailbox_provides_imailbox_and_its_folders_ifolder() -> None:
    mailbox = MemoryMailbox()
    assert verifyObject(IMailbox, mailbox)
    for info in mailbox.list_folders():
        assert verifyObject(IFolder, mailbox.folder(info.name))


def test_append_stores_crlf_and_counts_it() -> None:
    folder = MemoryFolder()
    appended = result(folder.append(MESSAGE, ["\\Seen"], 1000.0))
    assert (appended.uidvalidity, appended.uid) == (1, 1)
    record = folder.record(1)
    data = folder.open_message(1).read()
    assert data == MESSAGE.replace(b"\n", b"\r\n") and record.size == len(data)
    assert record.flags == {"\\Seen"} and record.internaldate == 1000.0
    assert folder.meta(1).headers["subject"] == "hello" == folder.headers(1)["subject"]
    assert folder.status().messages == 1 and folder.status().unseen == 0 and folder.status().uidnext == 2


def test_unknown_uids_raise_no_such_message_or_are_skipped() -> None:
    folder = MemoryFolder()
    folder.add(MESSAGE)
    with pytest.raises(NoSuchMessage):
        folder.record(7)
    with pytest.raises(NoSuchMessage):
        folder.open_message(7)
    assert [r.uid for r in folder.records([7, 1])] == [1]
    assert [uid for uid, _h in folder.headers_many([7, 1])] == [1]


def test_flags_modseq_and_unchanged_since() -> None:
    folder = MemoryFolder()
    folder.add(MESSAGE)
    folder.add(MESSAGE)
    before = folder.status().highestmodseq
    changed, refused = result(folder.set_flags([1, 2], ["\\Flagged"], "add"))
    assert [r.uid for r in changed] == [1, 2] and refused == []
    assert [r.uid for r in folder.changed_since(before)] == [1, 2]
    # RFC 7162 §3.1.3: a message changed after unchanged_since is refused.
    changed, refused = result(folder.set_flags([1, 2], ["\\Flagged"], "remove", unchanged_since=before))
    assert changed == [] and refused == [1, 2]


def test_expunge_leaves_tombstones_and_copy_move_between_folders() -> None:
    mailbox = MemoryMailbox()
    inbox = mailbox.folder("inbox")
    for _ in range(3):
        inbox.add(MESSAGE)
    mark = inbox.status().highestmodseq
    assert result(inbox.expunge([2, 9])) == [2]
    assert inbox.expunged_since(mark) == [2] and inbox.expunge_log_floor() == 0
    copied = result(inbox.copy([1], "Sent"))
    assert copied.source_uids == (1,) and copied.dest_uids == (1,)
    moved = result(inbox.move([3], "Trash"))
    assert moved.source_uids == (3,) and [r.uid for r in inbox.records()] == [1]
    with pytest.raises(NoSuchFolder):
        result(inbox.copy([1], "Nowhere"))


def test_changes_reach_listeners_at_poll() -> None:
    folder = MemoryFolder()
    heard: list[FolderChanges] = []

    class Listener:
        def folder_changed(self, changed: Any, changes: FolderChanges) -> None:
            heard.append(changes)

    listener = Listener()
    folder.subscribe_changes(listener)
    folder.add(MESSAGE)
    folder.add(MESSAGE)
    assert heard == []  # reported when the test decides, not before
    folder.poll_changes()
    result(folder.expunge([1]))
    folder.poll_changes()
    folder.poll_changes()  # nothing new: no report
    assert heard == [FolderChanges(new_uids=(1, 2)), FolderChanges(expunged_uids=(1,))]
    folder.unsubscribe_changes(listener)
    folder.add(MESSAGE)
    folder.poll_changes()
    assert len(heard) == 2


def test_mailbox_folders_create_rename_delete() -> None:
    mailbox = MemoryMailbox("Alice@Example.com")
    assert mailbox.address == "alice@example.com"
    assert mailbox.list_folders()[0].name == "INBOX"
    assert mailbox.folder_by_special_use("\\Sent").name == "Sent"
    result(mailbox.create_folder("a/b/c"))
    assert {"a", "a/b", "a/b/c"} <= {f.name for f in mailbox.list_folders()}
    with pytest.raises(FolderExists):
        result(mailbox.create_folder("a"))
    result(mailbox.rename_folder("a", "z"))
    assert {"z", "z/b", "z/b/c"} <= {f.name for f in mailbox.list_folders()}
    result(mailbox.delete_folder("z/b/c"))
    with pytest.raises(NoSuchFolder):
        mailbox.folder("z/b/c")
    sent = result(mailbox.save_sent(MESSAGE, "<id@x>"))
    assert mailbox.folder("Sent").record(sent.uid).flags == {"\\Seen"}
    assert mailbox.quota().messages_used == 1


def test_folder_list_listeners_hear_creates_renames_and_subscriptions() -> None:
    """What IMAP NOTIFY MailboxName/SubscriptionChange rely on: a change to
    the folder list is told, and a renamed folder keeps its ident."""
    mailbox = MemoryMailbox()
    heard: list[Any] = []

    class Listener:
        def folder_list_changed(self, box: Any) -> None:
            heard.append({info.name: info.ident for info in box.list_folders()})

    listener = Listener()
    mailbox.subscribe_list_changes(listener)
    result(mailbox.create_folder("Projects"))
    ident = heard[-1]["Projects"]
    result(mailbox.rename_folder("Projects", "Work"))
    assert heard[-1]["Work"] == ident and "Projects" not in heard[-1]
    result(mailbox.set_subscribed("Work", False))
    assert len(heard) == 3
    mailbox.unsubscribe_list_changes(listener)
    result(mailbox.delete_folder("Work"))
    assert len(heard) == 3
