# -*- test-case-name: tests.store.test_uids -*-
"""UIDs: strictly ascending, never reused within a UIDVALIDITY, across
restarts and across processes appending to one folder at once."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.store.conftest import SyncStore, result_of

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_uids_survive_restart_and_are_never_reused(sync: SyncStore) -> None:
    inbox = sync.mailbox().folder("INBOX")
    uids = [result_of(inbox.append(b"Subject: x\r\n\r\n%d\r\n" % i)).uid for i in range(3)]
    assert uids == [1, 2, 3]
    uidvalidity = inbox.status().uidvalidity
    result_of(inbox.expunge([3]))  # the highest UID goes away
    store = sync.reopen()
    inbox = store.mailbox("alice@example.com").folder("INBOX")
    assert inbox.status().uidvalidity == uidvalidity
    assert inbox.status().uidnext == 4
    assert result_of(inbox.append(b"Subject: y\r\n\r\n")).uid == 4
    assert [r.uid for r in inbox.records()] == [1, 2, 4]


def test_recreated_folder_gets_new_uidvalidity(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    result_of(mailbox.create_folder("Projects"))
    first = mailbox.folder("Projects").status().uidvalidity
    result_of(mailbox.delete_folder("Projects"))
    result_of(mailbox.create_folder("Projects"))
    assert mailbox.folder("Projects").status().uidvalidity > first


def test_two_processes_append_to_one_folder_at_once(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    data_dir = sync.settings.data_dir
    sync.close()  # the children and a re-opened parent share the directory
    count = 100
    go = os.path.join(data_dir, "go")
    env = dict(os.environ, PYTHONPATH=ROOT, XMAIL_TEST_GO=go)
    cmd = [sys.executable, "-m", "tests.store.appender", data_dir, "alice@example.com", "INBOX", str(count)]
    children = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT, env=env) for _ in range(2)]
    for child in children:
        assert child.stdout.readline().strip() == "ready"
    open(go, "w").close()
    outputs = [child.communicate(timeout=120)[0] for child in children]
    assert [child.returncode for child in children] == [0, 0]
    per_child = [[int(line) for line in out.split()] for out in outputs]
    for uids in per_child:
        assert len(uids) == count and uids == sorted(uids)  # ascending within each process
    every = per_child[0] + per_child[1]
    assert sorted(every) == list(range(1, 2 * count + 1))  # no collision, no gap
    store = sync.open()
    inbox = store.mailbox("alice@example.com").folder("INBOX")
    assert [r.uid for r in inbox.records()] == list(range(1, 2 * count + 1))
    assert len(os.listdir(os.path.join(mailbox.root, "cur"))) == 2 * count
    assert inbox.status().uidnext == 2 * count + 1
