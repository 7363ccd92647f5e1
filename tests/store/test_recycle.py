# -*- test-case-name: tests.store.test_recycle -*-
"""Recycle: expunge moves messages there with an expiry; purge with a
controllable clock; restore into the original folder with a new UID."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.store.conftest import SyncStore, result_of
from tests.store.test_uids import ROOT

DAY = 86400.0


def _files(path: str) -> list[str]:
    return sorted(os.listdir(os.path.join(path, "cur")))


def test_expunge_moves_to_recycle_with_expiry(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    result_of(mailbox.create_folder("Work"))
    work = mailbox.folder("Work")
    result_of(work.append(b"Subject: report\r\n\r\nbody\r\n", ["\\Seen"]))
    result_of(work.append(b"Subject: other\r\n\r\n"))
    assert result_of(work.expunge([1, 99])) == [1]
    assert [r.uid for r in work.records()] == [2]
    assert len(_files(os.path.join(mailbox.root, ".Work"))) == 1
    (recycled,) = mailbox.recycle_list()
    assert recycled.original_folder == "Work"
    assert recycled.subject == "report"
    assert recycled.expunged_at == sync.clock.now
    assert recycled.expires_at == sync.clock.now + 5 * DAY
    recycle = mailbox.folder("Recycle")
    assert recycle.record(recycled.uid).flags == {"\\Seen"}
    assert len(_files(os.path.join(mailbox.root, ".Recycle"))) == 1
    # Quota still counts it: it is on disk.
    assert mailbox.quota().messages_used == 2


def test_purge_only_what_expired(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    for i in range(3):
        result_of(inbox.append(b"Subject: %d\r\n\r\n" % i))
    result_of(inbox.expunge([1]))
    sync.clock.now += 2 * DAY
    result_of(inbox.expunge([2]))
    assert result_of(sync.store.purge_expired()) == 0
    sync.clock.now += 3 * DAY  # first one is 5 days old now
    assert result_of(sync.store.purge_expired()) == 1
    assert [m.original_folder for m in mailbox.recycle_list()] == ["INBOX"]
    assert len(_files(os.path.join(mailbox.root, ".Recycle"))) == 1
    assert result_of(sync.store.purge_expired(sync.clock.now + 10 * DAY)) == 1
    assert mailbox.recycle_list() == []
    assert _files(os.path.join(mailbox.root, ".Recycle")) == []
    assert mailbox.quota().messages_used == 1


def test_expunge_inside_recycle_deletes_for_good(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    result_of(inbox.append(b"Subject: bye\r\n\r\n"))
    result_of(inbox.expunge([1]))
    recycle = mailbox.folder("Recycle")
    (uid,) = [r.uid for r in recycle.records()]
    assert result_of(recycle.expunge([uid])) == [uid]
    assert recycle.records() == [] and mailbox.recycle_list() == []
    assert _files(os.path.join(mailbox.root, ".Recycle")) == []
    assert mailbox.quota().messages_used == 0 and mailbox.quota().bytes_used == 0


def test_restore_into_original_folder_with_new_uid(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    result_of(mailbox.create_folder("Keep"))
    keep = mailbox.folder("Keep")
    result_of(keep.append(b"Subject: a\r\n\r\n", ["\\Flagged"]))
    result_of(keep.expunge([1]))
    (recycled,) = mailbox.recycle_list()
    restored = result_of(mailbox.recycle_restore([recycled.uid]))
    assert restored == [(recycled.uid, "Keep", 2)]
    assert [(r.uid, r.flags) for r in keep.records()] == [(2, {"\\Flagged"})]
    assert mailbox.recycle_list() == []
    assert mailbox.folder("Recycle").records() == []


def test_restore_from_another_process_while_open(sync: SyncStore) -> None:
    """`xmailctl recycle restore` runs in its own process on the same data."""
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    result_of(inbox.append(b"Subject: back\r\n\r\n"))
    result_of(inbox.expunge([1]))
    (recycled,) = mailbox.recycle_list()
    out = subprocess.run([sys.executable, "-m", "tests.store.appender", sync.settings.data_dir,
                          "alice@example.com", "INBOX", "0", "restore", str(recycled.uid)],
                         capture_output=True, text=True, cwd=ROOT, timeout=60, check=True)
    assert out.stdout.split() == ["2"]
    assert [r.uid for r in inbox.records()] == [2]
    assert mailbox.recycle_list() == []
