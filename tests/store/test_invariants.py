# -*- test-case-name: tests.store.test_invariants -*-
"""Random sequences of store operations keep index and Maildir in step.

After every step: each record's file exists under the name its flags give,
cur/ holds nothing else, tmp/ and new/ are empty, the folder counters and
the user's quota usage equal what the records add up to, UIDs only grow.
"""

from __future__ import annotations

import os
import tempfile

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from tests.store.conftest import SyncStore, result_of
from xmail.store import maildir

FOLDERS = ["INBOX", "Archive", "Recycle", "Work/Sub"]
FLAGS = ["\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft", "$Forwarded", "todo", "later"]


class StoreMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.tmp = tempfile.TemporaryDirectory()
        self.sync = SyncStore(os.path.join(self.tmp.name, "data"))
        self.mailbox = self.sync.mailbox()
        result_of(self.mailbox.create_folder("Work/Sub"))
        self.uidnext = {name: 1 for name in FOLDERS}

    def teardown(self) -> None:
        self.sync.close()
        self.tmp.cleanup()

    def _uids(self, name: str) -> list[int]:
        return [r.uid for r in self.mailbox.folder(name).records()]

    @rule(folder=st.sampled_from(FOLDERS), flags=st.sets(st.sampled_from(FLAGS)),
          body=st.binary(max_size=40), bare_lf=st.booleans())
    def append(self, folder: str, flags: set[str], body: bytes, bare_lf: bool) -> None:
        eol = b"\n" if bare_lf else b"\r\n"
        result = result_of(self.mailbox.folder(folder).append(b"Subject: t" + eol + eol + body, flags))
        assert result.uid >= self.uidnext[folder]

    @rule(folder=st.sampled_from(FOLDERS), flags=st.sets(st.sampled_from(FLAGS)),
          mode=st.sampled_from(["set", "add", "remove"]), pick=st.integers(0, 5))
    def set_flags(self, folder: str, flags: set[str], mode: str, pick: int) -> None:
        uids = self._uids(folder)[pick:pick + 3]
        result_of(self.mailbox.folder(folder).set_flags(uids, flags, mode))

    @rule(src=st.sampled_from(FOLDERS), dest=st.sampled_from(FOLDERS), pick=st.integers(0, 5),
          move=st.booleans())
    def copy_or_move(self, src: str, dest: str, pick: int, move: bool) -> None:
        uids = self._uids(src)[pick:pick + 2]
        folder = self.mailbox.folder(src)
        result = result_of(folder.move(uids, dest) if move else folder.copy(uids, dest))
        assert list(result.source_uids) == uids

    @rule(folder=st.sampled_from(FOLDERS), pick=st.integers(0, 5))
    def expunge(self, folder: str, pick: int) -> None:
        uids = self._uids(folder)[pick:pick + 2]
        assert result_of(self.mailbox.folder(folder).expunge(uids)) == uids

    @rule()
    def restore_all(self) -> None:
        result_of(self.mailbox.recycle_restore([m.uid for m in self.mailbox.recycle_list()]))

    @rule()
    def reindex(self) -> None:
        counts = result_of(self.sync.store.reindex("alice@example.com"))
        assert counts["new"] == counts["removed"] == counts["skipped"] == 0

    @invariant()
    def index_and_maildir_agree(self) -> None:
        total_bytes = total_messages = 0
        for name in FOLDERS:
            folder = self.mailbox.folder(name)
            records = folder.records()
            uids = [r.uid for r in records]
            assert uids == sorted(uids)
            status = folder.status()
            assert status.uidnext >= self.uidnext[name]
            assert all(uid < status.uidnext for uid in uids)
            self.uidnext[name] = status.uidnext
            assert status.messages == len(records)
            assert status.unseen == sum("\\Seen" not in r.flags for r in records)
            assert status.size == sum(r.size for r in records)
            directory = os.path.dirname(os.path.dirname(folder.message_path(uids[0]))) if uids else None
            expected = {os.path.basename(folder.message_path(u)) for u in uids}
            if directory:
                assert set(os.listdir(os.path.join(directory, "cur"))) == expected
                assert os.listdir(os.path.join(directory, "tmp")) == []
                assert os.listdir(os.path.join(directory, "new")) == []
            for record in records:
                with folder.open_message(record.uid) as f:
                    data = f.read()
                assert len(data) == record.size and not maildir.has_bare_lf(data)
                letters = maildir.split_info(os.path.basename(folder.message_path(record.uid)))[1]
                # The name carries every flag; keyword letters per dovecot-keywords.
                keywords = maildir.read_keywords_file(directory)
                assert letters == maildir.info_letters(record.flags, keywords)
                assert maildir.flags_from_letters(letters, keywords) == record.flags
            total_bytes += status.size
            total_messages += status.messages
        quota = self.mailbox.quota()
        assert (quota.bytes_used, quota.messages_used) == (total_bytes, total_messages)
        recycle_uids = set(self._uids("Recycle"))
        assert {m.uid for m in self.mailbox.recycle_list()} == recycle_uids


TestStoreMachine = StoreMachine.TestCase
TestStoreMachine.settings = settings(max_examples=25, stateful_step_count=25, deadline=None,
                                     suppress_health_check=[HealthCheck.too_slow])
