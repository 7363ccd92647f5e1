# -*- test-case-name: tests.store.test_flag_names -*-
"""A flag change renames the message file (Maildir "info", flags after
":2,"); the old name goes only after the change is durable, and a burst of
changes retires its old names together (MailStore.retire_names)."""

from __future__ import annotations

import os

from twisted.internet import defer


def _cur_files(threaded, fid: int) -> list[str]:
    with threaded.env.read() as txn:
        state = threaded.store.index.state(txn, fid)
    cur = os.path.join(threaded.store.folder_dir(state), "cur")
    return sorted(os.listdir(cur))


def test_burst_of_flag_changes_leaves_exactly_the_current_name(threaded) -> None:
    mailbox = threaded.mailbox()
    inbox = threaded.call(mailbox.folder, "INBOX")
    threaded.call(inbox.append, b"Subject: flags\r\n\r\nbody\r\n")
    threaded.call(inbox.append, b"Subject: other\r\n\r\nbody\r\n")
    syncs = []
    real_sync = threaded.env.sync

    def counting_sync() -> None:
        syncs.append(1)
        real_sync()

    threaded.env.sync = counting_sync
    # A -> B -> A and on: every intermediate name is stale, the last one is
    # current (and equals an earlier one, which must not be removed).
    changes = [(["\\Seen"], "add"), (["\\Flagged"], "add"), (["\\Seen"], "remove"),
               (["\\Flagged"], "remove"), (["\\Seen"], "add"), (["\\Answered"], "add"),
               (["\\Answered"], "remove")] * 3

    def burst() -> defer.Deferred:
        return defer.gatherResults([inbox.set_flags([1, 2], flags, mode) for flags, mode in changes])

    threaded.call(burst)
    (record1, record2) = threaded.call(inbox.records)
    assert record1.flags == record2.flags == {"\\Seen"}
    wanted = sorted(os.path.basename(threaded.call(threaded.store.current_path, inbox.fid, uid))
                    for uid in (1, 2))
    threaded.call(threaded.store.names_retired)
    assert _cur_files(threaded, inbox.fid) == wanted
    assert all(name.endswith(":2,S") for name in wanted)
    assert threaded.call(lambda: inbox.open_message(1).read()).startswith(b"Subject: flags")
    # 21 flag changes of each message: their old names were retired by a
    # few syncs, not one each (each retirement takes what piled up
    # meanwhile; one sync per change before: 19-21 here).
    assert 1 <= len(syncs) <= len(changes) // 3
