# -*- test-case-name: tests.store.test_modseq -*-
"""MODSEQ per message, HIGHESTMODSEQ per folder, and the expunge tombstones
behind RFC 7162 CHANGEDSINCE and VANISHED (EARLIER), compaction included."""

from __future__ import annotations

import marshal

from tests.store.conftest import SyncStore, result_of
from xmail.store.index import FolderState
from xmail.store.recycle import EXPUNGE_LOG_KEEP

MESSAGE = b"Subject: s\r\n\r\nbody\r\n"
DAY = 86400.0


def _inbox_with(sync: SyncStore, count: int):  # type: ignore[no-untyped-def]
    inbox = sync.mailbox().folder("INBOX")
    for _ in range(count):
        result_of(inbox.append(MESSAGE))
    return inbox


def test_every_change_raises_highestmodseq_and_the_message_modseq(sync: SyncStore) -> None:
    inbox = _inbox_with(sync, 3)
    modseqs = [r.modseq for r in inbox.records()]
    assert modseqs == sorted(modseqs) and len(set(modseqs)) == 3
    highest = inbox.status().highestmodseq
    assert highest == modseqs[-1]
    changed, refused = result_of(inbox.set_flags([2], ["\\Seen"], "add"))
    assert refused == [] and [r.uid for r in changed] == [2]
    assert changed[0].modseq == inbox.status().highestmodseq > highest
    assert inbox.record(2).modseq == changed[0].modseq
    # A change that changes nothing leaves MODSEQs alone.
    before = inbox.status().highestmodseq
    assert result_of(inbox.set_flags([2], ["\\Seen"], "add")) == ([], [])
    assert inbox.status().highestmodseq == before


def test_changed_since_reads_the_log_not_the_folder(sync: SyncStore) -> None:
    inbox = _inbox_with(sync, 5)
    mark = inbox.status().highestmodseq
    result_of(inbox.set_flags([4, 2], ["$Work"], "add"))
    result_of(inbox.append(MESSAGE))  # uid 6
    assert [r.uid for r in inbox.changed_since(mark)] == [2, 4, 6]
    assert [r.uid for r in inbox.changed_since(0)] == [1, 2, 3, 4, 5, 6]
    assert inbox.changed_since(inbox.status().highestmodseq) == []


def test_unchanged_since_refuses_newer_messages_only(sync: SyncStore) -> None:
    inbox = _inbox_with(sync, 3)
    mark = inbox.status().highestmodseq
    result_of(inbox.set_flags([2], ["\\Flagged"], "add"))
    changed, refused = result_of(inbox.set_flags([1, 2, 3], ["\\Seen"], "add", unchanged_since=mark))
    assert refused == [2]
    assert [r.uid for r in changed] == [1, 3]
    assert "\\Seen" not in inbox.record(2).flags
    # RFC 7162 §3.1.3: UNCHANGEDSINCE 0 fails every message.
    changed, refused = result_of(inbox.set_flags([1, 2, 3], ["$X"], "add", unchanged_since=0))
    assert changed == [] and refused == [1, 2, 3]


def test_expunges_leave_tombstones_with_their_modseq(sync: SyncStore) -> None:
    inbox = _inbox_with(sync, 6)
    first = inbox.status().highestmodseq
    assert result_of(inbox.expunge([2, 5])) == [2, 5]
    second = inbox.status().highestmodseq
    assert second > first
    result_of(inbox.expunge([3]))
    assert inbox.expunged_since(first) == [2, 3, 5]
    assert inbox.expunged_since(second) == [3]
    assert inbox.expunged_since(inbox.status().highestmodseq) == []
    assert inbox.expunge_log_floor() == 0
    # MOVE leaves tombstones too (the message leaves this folder).
    result_of(inbox.move([6], "Archive"))
    assert inbox.expunged_since(second) == [3, 6]


def test_compaction_keeps_the_log_exact_above_the_floor(sync: SyncStore) -> None:
    inbox = _inbox_with(sync, 8)
    result_of(inbox.expunge([1, 2]))
    old_mark = inbox.status().highestmodseq
    sync.clock.now += 40 * DAY
    mid = inbox.status().highestmodseq
    result_of(inbox.expunge([5]))
    # Purge runs EXPUNGE_LOG_KEEP after the first expunges, not the second.
    result_of(sync.store.purge_expired(sync.clock.now + 1))
    assert 40 * DAY > EXPUNGE_LOG_KEEP
    assert inbox.expunge_log_floor() == old_mark
    assert inbox.expunged_since(old_mark) == [5]
    assert inbox.expunged_since(mid) == [5]
    # Below the floor the log says less than happened; callers check the floor.
    assert inbox.expunged_since(0) == [5]
    # HIGHESTMODSEQ is untouched by compaction.
    assert inbox.status().highestmodseq > old_mark


def test_compaction_drops_out_of_order_tombstones_under_the_floor(sync: SyncStore) -> None:
    inbox = _inbox_with(sync, 4)
    result_of(inbox.expunge([1]))
    low = inbox.status().highestmodseq
    sync.clock.now -= 50 * DAY  # a clock step back: a younger expunge, older time
    result_of(inbox.expunge([2]))
    high = inbox.status().highestmodseq
    sync.clock.now += 50 * DAY
    result_of(sync.store.purge_expired(sync.clock.now + 1))
    # uid 2's tombstone was stale; the floor covers its MODSEQ, and uid 1's
    # (below it, though recent) went with it so the log is complete above.
    assert inbox.expunge_log_floor() == high
    assert inbox.expunged_since(low - 1) == []
    assert high > low


def test_state_without_floor_decodes(sync: SyncStore) -> None:
    old = marshal.dumps((1, "a@b", "INBOX", ".", 7, 3, 9, 2, 1, 100, None, ["x"]))
    state = FolderState.decode(old)
    assert (state.uidvalidity, state.uidnext, state.modseq, state.expunge_floor) == (7, 3, 9, 0)
    state.expunge_floor = 5
    assert FolderState.decode(state.encode()) == state


def test_floor_survives_reopening(sync: SyncStore) -> None:
    inbox = _inbox_with(sync, 2)
    result_of(inbox.expunge([1]))
    mark = inbox.status().highestmodseq
    sync.clock.now += 31 * DAY
    result_of(sync.store.purge_expired(sync.clock.now))
    sync.close()
    sync.open()
    assert sync.mailbox().folder("INBOX").expunge_log_floor() == mark
