# -*- test-case-name: tests.store.test_mailbox -*-
"""Folders: defaults, nested create, rename (INBOX too), delete, subscribe,
and names that must be refused without touching the disk."""

from __future__ import annotations

import os

import pytest

from tests.store.conftest import SyncStore, result_of
from xmail.store.interfaces import FolderExists, FolderNotAllowed, InvalidFolderName, NoSuchFolder

DEFAULTS = ["INBOX", "Archive", "Drafts", "Junk", "Recycle", "Sent", "Trash"]


def _names(mailbox) -> list[str]:
    return [f.name for f in mailbox.list_folders()]


def _tree(root: str) -> set[str]:
    out = set()
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            out.add(os.path.relpath(os.path.join(dirpath, f), root))
    return out


def test_provision_creates_default_folders_with_special_use(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    infos = mailbox.list_folders()
    assert [f.name for f in infos] == DEFAULTS
    assert {f.name: f.special_use for f in infos} == {
        "INBOX": None, "Archive": "\\Archive", "Drafts": "\\Drafts", "Junk": "\\Junk",
        "Recycle": None, "Sent": "\\Sent", "Trash": "\\Trash"}
    assert all(f.subscribed for f in infos)
    for entry in ("cur", "new", "tmp", ".Sent/cur", ".Sent/maildirfolder", ".Recycle/tmp"):
        assert os.path.exists(os.path.join(mailbox.root, entry))
    assert mailbox.root.endswith(os.path.join("mail", "example.com", "alice"))
    assert mailbox.folder_by_special_use("\\Sent").name == "Sent"
    # Idempotent.
    assert result_of(sync.store.provision("ALICE@example.com")) is mailbox
    assert _names(mailbox) == DEFAULTS


def test_create_nested_creates_parents_and_dirs(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    result_of(mailbox.create_folder("Work/2024/Q1.reports"))
    assert {"Work", "Work/2024", "Work/2024/Q1.reports"} <= set(_names(mailbox))
    assert os.path.isdir(os.path.join(mailbox.root, ".Work.2024.Q1~2ereports", "cur"))
    with pytest.raises(FolderExists):
        result_of(mailbox.create_folder("Work/2024"))
    result_of(mailbox.create_folder("Ünïcode & Co"))
    assert os.path.isdir(os.path.join(mailbox.root, ".&ANw-n&AO8-code &- Co", "cur"))
    assert mailbox.folder("Ünïcode & Co").name == "Ünïcode & Co"


def test_inbox_is_case_insensitive(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    assert mailbox.folder("inbox").name == "INBOX"
    result_of(mailbox.create_folder("InBox/child"))
    assert "INBOX/child" in _names(mailbox)


@pytest.mark.parametrize("name", [
    "..", "a/../b", "../../etc", "/abs", "trailing/", "a//b", "", "nul\0x", "cr\rx", "lf\nx",
    "x" * 256, "./x", "a/./b", "wild*", "wild%card",
])
def test_invalid_names_are_refused_and_touch_nothing(sync: SyncStore, name: str) -> None:
    mailbox = sync.mailbox()
    data_dir = sync.settings.data_dir
    before = _tree(data_dir)
    with pytest.raises(InvalidFolderName):
        result_of(mailbox.create_folder(name))
    with pytest.raises(InvalidFolderName):
        mailbox.folder(name)
    with pytest.raises(InvalidFolderName):
        result_of(mailbox.rename_folder("Archive", name))
    assert _tree(data_dir) - before <= {"index/data.mdb", "index/lock.mdb"}
    assert _names(mailbox) == DEFAULTS


def test_encoded_names_never_leave_the_user_tree(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    for name in ("..x", "x..", ".hidden", "~7e", "a.b/..c", "cur", "tmp", "new"):
        result_of(mailbox.create_folder(name))
    root = os.path.realpath(mailbox.root)
    for entry in os.listdir(mailbox.root):
        path = os.path.realpath(os.path.join(mailbox.root, entry))
        assert os.path.dirname(path) == root
    assert set(_names(mailbox)) >= {"..x", "x..", ".hidden", "~7e", "a.b/..c", "cur", "tmp", "new"}
    assert mailbox.folder("cur").status().messages == 0


def test_special_folder_clashes(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    with pytest.raises(FolderNotAllowed):
        result_of(mailbox.create_folder("SENT"))
    with pytest.raises(FolderNotAllowed):
        result_of(mailbox.create_folder("recycle"))
    with pytest.raises(FolderNotAllowed):
        result_of(mailbox.create_folder("Recycle/sub"))
    with pytest.raises(FolderExists):
        result_of(mailbox.create_folder("Sent"))
    result_of(mailbox.create_folder("Archive/2024"))  # children of specials are fine
    for name in ("INBOX", "Sent", "Trash", "Recycle"):
        with pytest.raises(FolderNotAllowed):
            result_of(mailbox.delete_folder(name))
    with pytest.raises(FolderNotAllowed):
        result_of(mailbox.rename_folder("Sent", "Other"))
    result_of(mailbox.create_folder("Mine"))
    with pytest.raises(FolderNotAllowed):
        result_of(mailbox.rename_folder("Mine", "Drafts"))
    with pytest.raises(FolderNotAllowed):
        result_of(mailbox.rename_folder("Mine", "Mine/inside"))


def test_rename_moves_children_keeps_messages_and_subscriptions(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    result_of(mailbox.create_folder("a/b/c"))
    result_of(mailbox.set_subscribed("a/b", True))
    result = result_of(mailbox.folder("a/b").append(b"Subject: kept\r\n\r\n"))
    result_of(mailbox.rename_folder("a", "x/y"))
    names = _names(mailbox)
    assert "a" not in names and "a/b" not in names
    assert {"x", "x/y", "x/y/b", "x/y/b/c"} <= set(names)
    moved = mailbox.folder("x/y/b")
    assert [r.uid for r in moved.records()] == [result.uid]
    assert moved.status().uidvalidity == result.uidvalidity
    with moved.open_message(result.uid) as f:
        assert f.read() == b"Subject: kept\r\n\r\n"
    assert {f.name for f in mailbox.list_folders() if f.subscribed} >= {"x/y/b"}
    assert not os.path.exists(os.path.join(mailbox.root, ".a"))
    assert os.path.isdir(os.path.join(mailbox.root, ".x.y.b.c", "cur"))
    with pytest.raises(NoSuchFolder):
        result_of(mailbox.rename_folder("a", "z"))
    with pytest.raises(FolderExists):
        result_of(mailbox.rename_folder("x/y/b", "x/y/b/c"[:5]))  # "x/y/b" onto itself


def test_rename_inbox_moves_messages_and_leaves_inbox_empty(sync: SyncStore) -> None:
    # RFC 3501 §6.3.5
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    for i in range(3):
        result_of(inbox.append(b"Subject: %d\r\n\r\n" % i))
    result_of(mailbox.create_folder("INBOX/kid"))
    result_of(mailbox.rename_folder("INBOX", "Old mail"))
    assert inbox.status().messages == 0
    assert inbox.status().uidnext == 4  # UIDs are not reused
    assert mailbox.folder("Old mail").status().messages == 3
    assert "INBOX/kid" in _names(mailbox)
    assert "INBOX" in _names(mailbox)


def test_delete_moves_messages_to_recycle(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    result_of(mailbox.create_folder("Old"))
    result_of(mailbox.folder("Old").append(b"Subject: old\r\n\r\n"))
    result_of(mailbox.delete_folder("Old"))
    assert "Old" not in _names(mailbox)
    assert not os.path.exists(os.path.join(mailbox.root, ".Old"))
    recycled = mailbox.recycle_list()
    assert [(m.original_folder, m.subject) for m in recycled] == [("Old", "old")]
    with pytest.raises(NoSuchFolder):
        mailbox.folder("Old")
    # Restoring a message whose folder is gone puts it into INBOX.
    (restored,) = result_of(mailbox.recycle_restore([recycled[0].uid]))
    assert restored[1] == "INBOX"
    assert mailbox.folder("INBOX").status().messages == 1


def test_subscriptions(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    result_of(mailbox.set_subscribed("Trash", False))
    result_of(mailbox.set_subscribed("Does/not/exist", True))
    subscribed = {f.name for f in mailbox.list_folders() if f.subscribed}
    assert "Trash" not in subscribed and "INBOX" in subscribed
    assert "Does/not/exist" in mailbox.subscriptions()


def test_mailbox_of_unknown_user(sync: SyncStore) -> None:
    with pytest.raises(NoSuchFolder):
        sync.store.mailbox("nobody@example.com")


def test_objects_provide_their_interfaces(sync: SyncStore) -> None:
    from zope.interface.verify import verifyObject

    from xmail.store.interfaces import IFolder, IMailbox, IMessageStore

    mailbox = sync.mailbox()
    assert verifyObject(IMessageStore, sync.store)
    assert verifyObject(IMailbox, mailbox)
    assert verifyObject(IFolder, mailbox.folder("INBOX"))
