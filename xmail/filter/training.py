# -*- test-case-name: tests.filter.test_training -*-
"""Users train the spam filter by moving mail (issue 17).

A message copied or moved into Junk (from anywhere else) is reported to
rspamd as spam; one moved out of Junk into a folder other than Trash or
Recycle is reported as ham (deleting junk is not a verdict on it).  The
store tells us of every committed COPY/MOVE (MailStore.transfer_observers);
the learner (xmail.filter.scanners' RspamdLearner) is asynchronous and
rate-limited and never fails the IMAP command.  At most MAX_PER_MOVE
messages of one command are reported: a user dragging 10,000 old messages
into Junk must not flood the controller.
"""

from __future__ import annotations

from typing import Any

from xmail.filter.interfaces import JUNK_FOLDER

MAX_PER_MOVE = 50
NOT_A_VERDICT = frozenset({JUNK_FOLDER, "Trash", "Recycle"})


class JunkTraining:
    def __init__(self, store: Any, learner: Any):
        self.store = store
        self.learner = learner

    def moved(self, address: str, source: str, dest: str, dest_fid: int, dest_uids: tuple[int, ...]) -> None:
        if dest == JUNK_FOLDER and source != JUNK_FOLDER:
            spam = True
        elif source == JUNK_FOLDER and dest not in NOT_A_VERDICT:
            spam = False
        else:
            return
        for uid in dest_uids[:MAX_PER_MOVE]:
            path = self.store.current_path(dest_fid, uid)
            if path is not None:
                self.learner.learn(path, spam=spam)
