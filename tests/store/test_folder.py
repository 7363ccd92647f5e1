# -*- test-case-name: tests.store.test_folder -*-
"""Copy, move, UIDPLUS data, send-save dedup, reads of vanished messages."""

from __future__ import annotations

import os

import pytest

from tests.store.conftest import SyncStore, result_of
from xmail.store.interfaces import NoSuchFolder, NoSuchMessage, StoreError

MESSAGE = b"Message-ID: <abc@example.org>\r\nSubject: s\r\n\r\nbody\r\n"


def test_copy_hard_links_and_keeps_flags(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    result_of(inbox.append(MESSAGE, ["\\Seen", "work"]))
    result_of(inbox.append(MESSAGE))
    result = result_of(inbox.copy([1, 2, 77], "Archive"))
    archive = mailbox.folder("Archive")
    assert result.uidvalidity == archive.status().uidvalidity
    assert (result.source_uids, result.dest_uids) == ((1, 2), (1, 2))
    assert archive.record(1).flags == {"\\Seen", "work"}
    assert archive.message_path(1).endswith(":2,Sa")
    assert os.stat(archive.message_path(1)).st_ino == os.stat(inbox.message_path(1)).st_ino
    assert archive.meta(1).headers == inbox.meta(1).headers
    assert inbox.status().messages == 2
    # COPY into the same folder duplicates (RFC 3501 §6.4.7 allows it).
    result = result_of(inbox.copy([1], "INBOX"))
    assert result.dest_uids == (3,)
    with pytest.raises(NoSuchFolder):
        result_of(inbox.copy([1], "Nope"))


def test_move_removes_source_without_recycle(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    for _ in range(3):
        result_of(inbox.append(MESSAGE))
    result = result_of(inbox.move([1, 3], "Trash"))
    assert (result.source_uids, result.dest_uids) == ((1, 3), (1, 2))
    assert [r.uid for r in inbox.records()] == [2]
    assert mailbox.folder("Trash").status().messages == 2
    assert mailbox.recycle_list() == []
    assert len(os.listdir(os.path.join(mailbox.root, "cur"))) == 1
    assert len(os.listdir(os.path.join(mailbox.root, ".Trash", "cur"))) == 2
    with pytest.raises(NoSuchMessage):
        inbox.record(1)
    with pytest.raises(NoSuchMessage):
        inbox.open_message(1)
    with pytest.raises(NoSuchMessage):
        inbox.meta(3)
    # Moving to Recycle is an expunge by another name: it keeps where it came from.
    result_of(inbox.move([2], "Recycle"))
    assert [m.original_folder for m in mailbox.recycle_list()] == ["INBOX"]


def test_records_by_uid_set(sync: SyncStore) -> None:
    inbox = sync.mailbox().folder("INBOX")
    for _ in range(300):  # more than one index chunk
        result_of(inbox.append(MESSAGE))
    result_of(inbox.expunge(range(100, 200)))
    assert [r.uid for r in inbox.records([5, 150, 250, 999, 0, -1])] == [5, 250]
    assert len(inbox.records()) == 200
    assert [r.uid for r in inbox.records()] == sorted(r.uid for r in inbox.records())


def test_invalid_flags_refused(sync: SyncStore) -> None:
    inbox = sync.mailbox().folder("INBOX")
    with pytest.raises(StoreError):
        result_of(inbox.append(MESSAGE, ["\\Bogus"]))
    result_of(inbox.append(MESSAGE, ["\\seen", "\\Recent"]))
    assert inbox.record(1).flags == {"\\Seen"}  # canonical case, \Recent never stored
    with pytest.raises(StoreError):
        result_of(inbox.set_flags([1], ["bad keyword"], "add"))


def test_send_save_dedup_within_ten_minutes(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    saved = result_of(mailbox.save_sent(MESSAGE, "<abc@example.org>"))
    sent = mailbox.folder("Sent")
    assert sent.record(saved.uid).flags == {"\\Seen"}
    # The client APPENDs its own copy to Sent: answered from ours.
    again = result_of(sent.append(MESSAGE.replace(b"body", b"client copy"), ["\\Seen"]))
    assert again == type(again)(saved.uidvalidity, saved.uid, deduplicated=True)
    assert sent.status().messages == 1
    # Another folder, or another Message-ID: stored as usual.
    assert not result_of(mailbox.folder("Drafts").append(MESSAGE)).deduplicated
    other = MESSAGE.replace(b"<abc@", b"<xyz@")
    assert not result_of(sent.append(other)).deduplicated
    sync.clock.now += 601
    assert not result_of(sent.append(MESSAGE)).deduplicated
    assert sent.status().messages == 3


def test_headers_without_the_rest_of_meta(sync: SyncStore) -> None:
    inbox = sync.mailbox().folder("INBOX")
    for i in range(3):
        result_of(inbox.append(b"Subject: number %d\r\nFrom: x@example.org\r\n\r\nbody\r\n" % i))
    result_of(inbox.expunge([2]))
    assert {k.lower(): v for k, v in inbox.headers(3).items()}["subject"] == "number 2"
    got = inbox.headers_many([1, 2, 3, 4])
    assert [uid for uid, _h in got] == [1, 3]
    assert got[0][1] == inbox.meta(1).headers
    with pytest.raises(NoSuchMessage):
        inbox.headers(2)


def test_send_save_takes_message_id_from_header_when_not_given(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    saved = result_of(mailbox.save_sent(MESSAGE.replace(b"\r\n", b"\n"), None))
    again = result_of(mailbox.folder("Sent").append(MESSAGE))
    assert again.deduplicated and again.uid == saved.uid


def test_changed_and_expunged_since(sync: SyncStore) -> None:
    inbox = sync.mailbox().folder("INBOX")
    for _ in range(4):
        result_of(inbox.append(MESSAGE))
    mark = inbox.status().highestmodseq
    result_of(inbox.set_flags([2], ["\\Seen"], "add"))
    result_of(inbox.expunge([3]))
    result_of(inbox.append(MESSAGE))
    assert [r.uid for r in inbox.changed_since(mark)] == [2, 5]
    assert inbox.expunged_since(mark) == [3]
    assert inbox.changed_since(inbox.status().highestmodseq) == []
