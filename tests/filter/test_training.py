"""Moves into and out of Junk train the spam filter (the store's transfer observers)."""

from __future__ import annotations

from typing import Any

from tests.store.conftest import SyncStore, result_of
from xmail.filter.training import MAX_PER_MOVE, JunkTraining


class Learner:
    """Records what would be reported (the rspamd learner is tested against rspamd)."""

    def __init__(self) -> None:
        self.reports: list[tuple[bytes, bool]] = []

    def learn(self, source: str, spam: bool) -> None:
        with open(source, "rb") as f:
            self.reports.append((f.read(), spam))


def test_moves_into_junk_are_spam_out_of_junk_ham_and_deleting_is_neither(tmp_path: Any) -> None:
    sync = SyncStore(str(tmp_path / "data"))
    try:
        learner = Learner()
        sync.store.transfer_observers.append(JunkTraining(sync.store, learner).moved)
        mailbox = sync.mailbox()
        inbox = mailbox.folder("INBOX")
        first = result_of(inbox.append(b"Subject: offer\r\n\r\nbuy now\r\n"))
        result_of(inbox.append(b"Subject: hello\r\n\r\nhi\r\n"))
        (junk_uid,) = result_of(inbox.move([first.uid], "Junk")).dest_uids
        assert learner.reports == [(b"Subject: offer\r\n\r\nbuy now\r\n", True)]

        junk = mailbox.folder("Junk")
        result_of(junk.copy([junk_uid], "Archive"))
        assert learner.reports[-1] == (b"Subject: offer\r\n\r\nbuy now\r\n", False)
        result_of(junk.move([junk_uid], "Trash"))
        result_of(inbox.copy([2], "Sent"))
        assert len(learner.reports) == 2  # into Trash, and between ordinary folders: no verdict
    finally:
        sync.close()


def test_a_big_move_reports_a_bounded_number(tmp_path: Any) -> None:
    sync = SyncStore(str(tmp_path / "data"))
    try:
        learner = Learner()
        sync.store.transfer_observers.append(JunkTraining(sync.store, learner).moved)
        inbox = sync.mailbox().folder("INBOX")
        uids = [result_of(inbox.append(b"Subject: %d\r\n\r\nx\r\n" % i)).uid for i in range(MAX_PER_MOVE + 5)]
        result_of(inbox.move(uids, "Junk"))
        assert len(learner.reports) == MAX_PER_MOVE
    finally:
        sync.close()
