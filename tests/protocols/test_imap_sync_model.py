"""SelectedFolder's bookkeeping: a client that applies our EXISTS / EXPUNGE
lines to its own message list always ends up with our view (RFC 3501 §7.4.1)."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from xmail.protocols.imap.model import STAR, SeqRange, SeqSet
from xmail.protocols.imap.sync import RecentTracker, SelectedFolder
from xmail.store.interfaces import FolderChanges, MessageRecord
from xmail.store.memory import MemoryFolder


def record(uid: int, flags: frozenset[str] = frozenset(), modseq: int = 1) -> MessageRecord:
    return MessageRecord(uid, flags, modseq, 100, 0.0, f"m{uid}")


def make_view(uids: list[int]) -> tuple[MemoryFolder, SelectedFolder]:
    folder = MemoryFolder()
    view = SelectedFolder(folder, ("a@x", "INBOX"), False, [record(u) for u in uids], RecentTracker())
    return folder, view


def apply(client: list[int], lines: list[bytes], server_uids: list[int]) -> None:
    for line in lines:
        if m := re.match(rb"\* (\d+) EXPUNGE\r\n", line):
            del client[int(m.group(1)) - 1]
        elif m := re.match(rb"\* (\d+) EXISTS\r\n", line):
            n = int(m.group(1))
            assert n >= len(client)  # EXISTS never shrinks the folder (RFC 3501 §7.3.1)
            client.extend(server_uids[len(client) : n])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["new", "expunge", "flush", "flush-no-expunge"]),
                          st.integers(0, 30)), max_size=40))
def test_client_view_stays_consistent(steps: list[tuple[str, int]]) -> None:
    folder, view = make_view([1, 2, 3, 4, 5])
    client = [1, 2, 3, 4, 5]
    store = [1, 2, 3, 4, 5]  # what the store holds
    next_uid = 6
    for action, n in steps:
        if action == "new":
            view.folder_changed(folder, FolderChanges(new_uids=(next_uid,)))
            store.append(next_uid)
            next_uid += 1
        elif action == "expunge" and store:
            uid = store.pop(n % len(store))
            view.folder_changed(folder, FolderChanges(expunged_uids=(uid,)))
        else:
            lines = view.flush(allow_expunge=action == "flush")
            if action != "flush":
                assert not any(b"EXPUNGE" in line for line in lines)
            apply(client, lines, list(view.uids))
            assert client == list(view.uids)
    apply(client, view.flush(allow_expunge=True), list(view.uids))
    assert client == list(view.uids) == store


def test_own_flag_changes_are_not_echoed() -> None:
    folder, view = make_view([1, 2])
    view.note_own_flags([record(1, frozenset({"\\Seen"}), modseq=5)])
    view.folder_changed(folder, FolderChanges(flag_changes=(record(1, frozenset({"\\Seen"}), 5),)))
    assert view.flush(True) == []
    view.folder_changed(folder, FolderChanges(flag_changes=(record(1, frozenset({"\\Flagged"}), 6),)))
    assert view.flush(True) == [b"* 1 FETCH (UID 1 FLAGS (\\Flagged))\r\n"]  # old mail: not \Recent


def test_resolve_sequence_and_uid_sets() -> None:
    _, view = make_view([3, 5, 9, 12])
    assert view.resolve(SeqSet((SeqRange(2, STAR),)), by_uid=False) == [(2, 5), (3, 9), (4, 12)]
    assert view.resolve(SeqSet((SeqRange(4, 2), SeqRange(1, 1))), by_uid=False) == [(1, 3), (2, 5), (3, 9),
                                                                                    (4, 12)]
    assert view.resolve(SeqSet((SeqRange(4, 10),)), by_uid=True) == [(2, 5), (3, 9)]
    assert view.resolve(SeqSet((SeqRange(100, STAR),)), by_uid=True) == [(4, 12)]  # RFC 3501 §6.4.8
    try:
        view.resolve(SeqSet((SeqRange(5, 5),)), by_uid=False)
    except ValueError:
        pass
    else:
        raise AssertionError("sequence number 5 of 4 accepted")


def test_recent_goes_to_the_first_view_only() -> None:
    tracker = RecentTracker(clock=lambda: 0.0)
    folder = MemoryFolder()
    first = SelectedFolder(folder, ("a", "INBOX"), False, [record(1)], tracker)
    examine = SelectedFolder(folder, ("a", "INBOX"), True, [record(1), record(2)], tracker)
    second = SelectedFolder(folder, ("a", "INBOX"), False, [record(1), record(2)], tracker)
    assert first.recent == {1} and examine.recent == {2} and second.recent == {2}
    first.folder_changed(folder, FolderChanges(new_uids=(3,)))
    second.folder_changed(folder, FolderChanges(new_uids=(3,)))
    assert b"* 2 RECENT\r\n" in second.flush(True)
    assert b"* 1 RECENT\r\n" in first.flush(True)  # 3 was taken by second
