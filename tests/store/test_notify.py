# -*- test-case-name: tests.store.test_notify -*-
"""Change notification: listeners hear of new, expunged and re-flagged
messages, from this process at once and from other processes by polling."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable

from zope.interface import implementer

from tests.store.conftest import SyncStore
from tests.store.test_uids import ROOT
from xmail.store.interfaces import FolderChanges, IFolderListener


@implementer(IFolderListener)
class Recorder:
    def __init__(self) -> None:
        self.changes: list[FolderChanges] = []
        self.threads: set[str] = set()
        self._event = threading.Condition()

    def folder_changed(self, folder, changes: FolderChanges) -> None:
        with self._event:
            self.threads.add(threading.current_thread().name)
            self.changes.append(changes)
            self._event.notify_all()

    def merged(self) -> FolderChanges:
        with self._event:
            return FolderChanges(
                tuple(u for c in self.changes for u in c.new_uids),
                tuple(u for c in self.changes for u in c.expunged_uids),
                tuple(r for c in self.changes for r in c.flag_changes))

    def wait_for(self, predicate: Callable[[FolderChanges], object], timeout: float = 10.0) -> FolderChanges:
        deadline = time.monotonic() + timeout
        with self._event:
            while True:
                merged = FolderChanges(
                    tuple(u for c in self.changes for u in c.new_uids),
                    tuple(u for c in self.changes for u in c.expunged_uids),
                    tuple(r for c in self.changes for r in c.flag_changes))
                if predicate(merged):
                    return merged
                left = deadline - time.monotonic()
                assert left > 0, f"no matching change in {timeout}s: {self.changes}"
                self._event.wait(left)


def test_in_process_listener_hears_at_once(threaded) -> None:
    mailbox = threaded.mailbox()
    session = threaded.call(mailbox.folder, "INBOX")
    other = threaded.call(mailbox.folder, "INBOX")
    listener = Recorder()
    threaded.call(session.subscribe_changes, listener)
    threaded.call(other.append, b"Subject: 1\r\n\r\n")
    threaded.call(other.append, b"Subject: 2\r\n\r\n")
    # Fired on the reactor thread, right after the commit (no poll interval).
    assert listener.merged().new_uids == (1, 2)
    threaded.call(other.set_flags, [1], ["\\Seen"], "add")
    changes = listener.merged()
    assert [(r.uid, r.flags) for r in changes.flag_changes] == [(1, {"\\Seen"})]
    threaded.call(other.expunge, [2])
    assert listener.merged().expunged_uids == (2,)
    assert listener.threads == {"reactor"}
    threaded.call(session.unsubscribe_changes, listener)
    threaded.call(other.append, b"Subject: 3\r\n\r\n")
    assert listener.merged().new_uids == (1, 2)


def test_changes_from_another_process_are_detected(threaded) -> None:
    mailbox = threaded.mailbox()
    inbox = threaded.call(mailbox.folder, "INBOX")
    threaded.call(inbox.append, b"Subject: mine\r\n\r\n")
    listener = Recorder()
    threaded.call(inbox.subscribe_changes, listener)
    subprocess.run([sys.executable, "-m", "tests.store.appender", threaded.settings.data_dir,
                    "alice@example.com", "INBOX", "2"], check=True, cwd=ROOT, timeout=60,
                   env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True)
    changes = listener.wait_for(lambda c: len(c.new_uids) == 2, timeout=5)
    assert changes.new_uids == (2, 3)


def test_sync_mode_poll_changes(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    listener = Recorder()
    inbox.subscribe_changes(listener)
    subprocess.run([sys.executable, "-m", "tests.store.appender", sync.settings.data_dir,
                    "alice@example.com", "INBOX", "1"], check=True, cwd=ROOT, timeout=60,
                   env=dict(os.environ, PYTHONPATH=ROOT), capture_output=True)
    assert listener.changes == []
    inbox.poll_changes()
    assert listener.merged().new_uids == (1,)
    inbox.poll_changes()
    assert len(listener.changes) == 1


def test_restore_by_another_process_reaches_a_listening_session(threaded) -> None:
    """`xmailctl recycle restore` while the daemon runs: an IDLE session hears it."""
    mailbox = threaded.mailbox()
    inbox = threaded.call(mailbox.folder, "INBOX")
    threaded.call(inbox.append, b"Subject: oops\r\n\r\n")
    threaded.call(inbox.expunge, [1])
    (recycled,) = threaded.call(mailbox.recycle_list)
    listener = Recorder()
    threaded.call(inbox.subscribe_changes, listener)
    out = subprocess.run([sys.executable, "-m", "tests.store.appender", threaded.settings.data_dir,
                          "alice@example.com", "INBOX", "0", "restore", str(recycled.uid)],
                         check=True, cwd=ROOT, timeout=60, env=dict(os.environ, PYTHONPATH=ROOT),
                         capture_output=True, text=True)
    assert out.stdout.split() == ["2"]
    assert listener.wait_for(lambda c: c.new_uids, timeout=5).new_uids == (2,)
    assert threaded.call(mailbox.recycle_list) == []
