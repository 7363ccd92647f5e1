# -*- test-case-name: tests.protocols.test_imap_qresync -*-
"""QRESYNC (RFC 7162 §3.2) against the real server: a client cache resynced
after flag changes and expunges made in another session (exact VANISHED
(EARLIER) and FETCH sets), UID FETCH (CHANGEDSINCE n VANISHED), VANISHED
instead of EXPUNGE (EXPUNGE, MOVE, other sessions, IDLE), [CLOSED], and the
answer once the tombstones were compacted past the client's MODSEQ."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.protocols.imap_support import Wire, deliver, message
from tests.protocols.test_imap_condstore import highest_in, modseq_of

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_FETCH = re.compile(rb"\* (\d+) FETCH \(UID (\d+) FLAGS \(([^)]*)\) MODSEQ \((\d+)\)\)")


def session(server: Any, *, qresync: bool = True) -> Wire:
    wire = Wire(server.port("imap"))
    wire.login()
    if qresync:
        assert wire.ok("ENABLE QRESYNC") == [b"* ENABLED QRESYNC"]
    return wire


@pytest.fixture
def ten(server):  # type: ignore[no-untyped-def]
    for i in range(10):
        deliver(server, "alice@example.com", message(f"m{i}"))
    return server


class ClientCache:
    """What a caching client keeps: UIDVALIDITY, HIGHESTMODSEQ, and flags by UID."""

    def __init__(self, wire: Wire):
        lines = wire.ok("SELECT INBOX")
        self.uidvalidity = int(_UIDVALIDITY.search(b"\n".join(lines)).group(1))
        self.modseq = highest_in(lines)
        self.flags = {}
        for line in wire.ok("UID FETCH 1:* (FLAGS)"):
            m = re.match(rb"\* \d+ FETCH \(UID (\d+) FLAGS \(([^)]*)\)", line)
            self.flags[int(m.group(1))] = set(m.group(2).split()) - {b"\\Recent"}

    def known(self) -> str:
        return ",".join(str(uid) for uid in sorted(self.flags))


def vanished_uids(line: bytes) -> set[int]:
    assert line.startswith(b"* VANISHED (EARLIER) "), line
    out: set[int] = set()
    for part in line.split()[-1].split(b","):
        low, _, high = part.partition(b":")
        out.update(range(int(low), int(high or low) + 1))
    return out


def test_qresync_select_needs_enable(ten: Any) -> None:
    with session(ten, qresync=False) as wire:
        tagged, _ = wire.transact("SELECT INBOX (QRESYNC (1 1))")
        assert tagged.startswith(b"BAD")
        tagged, _ = wire.transact("UID FETCH 1:* FLAGS (CHANGEDSINCE 1 VANISHED)")
        assert tagged.startswith(b"BAD")


def test_cache_resync_after_changes_elsewhere(ten: Any) -> None:
    with session(ten) as wire, session(ten, qresync=False) as other:
        cache = ClientCache(wire)
        other.ok("SELECT INBOX")
        other.ok("UID STORE 2,7 +FLAGS.SILENT (\\Flagged)")
        other.ok("UID STORE 3,4,9 +FLAGS.SILENT (\\Deleted)")
        other.ok("EXPUNGE")  # expunges 3, 4, 9
        other.ok("UID STORE 5 +FLAGS.SILENT ($Later)")
        deliver(ten, "alice@example.com", message("new"))  # uid 11
        other.ok("UID MOVE 10 Archive")
        # Reselect (the client was offline meanwhile: select elsewhere first).
        lines = wire.ok(f"SELECT INBOX (QRESYNC ({cache.uidvalidity} {cache.modseq} {cache.known()}))")
        assert lines[0] == b"* OK [CLOSED] previous mailbox closed"  # RFC 7162 §3.2.11
        [vanished] = [line for line in lines if b"VANISHED" in line]
        assert vanished_uids(vanished) == {3, 4, 9, 10}
        fetched = {int(m.group(2)): (int(m.group(1)), set(m.group(3).split()), int(m.group(4)))
                   for m in (_FETCH.match(line) for line in lines) if m}
        # The changed messages the client knows (known-uids limits the
        # answer); the new uid 11 is announced by EXISTS and UIDNEXT.
        assert sorted(fetched) == [2, 5, 7]
        assert fetched[2][1] == {b"\\Flagged"} and fetched[5][1] == {b"$Later"}
        assert all(modseq > cache.modseq for _, _, modseq in fetched.values())
        # Sequence numbers are those of the new view: 1 2 5 6 7 8 11.
        assert {uid: seq for uid, (seq, _, _) in fetched.items()} == {2: 2, 5: 3, 7: 5}
        assert b"* 7 EXISTS" in lines and b"* OK [UIDNEXT 12] predicted next UID" in lines
        assert highest_in(lines) > max(m for _, _, m in fetched.values())  # the MOVE came last
        # VANISHED precedes the FETCHes (RFC 7162 §3.2.5.1 example).
        assert lines.index(vanished) < min(i for i, line in enumerate(lines) if _FETCH.match(line))


def test_resync_limited_to_known_uids(ten: Any) -> None:
    with session(ten) as wire, session(ten, qresync=False) as other:
        cache = ClientCache(wire)
        other.ok("SELECT INBOX")
        other.ok("UID STORE 1,8 +FLAGS.SILENT (\\Seen \\Deleted)")
        other.ok("UID EXPUNGE 1,8")
        other.ok("UID STORE 2,9 +FLAGS.SILENT (\\Answered)")
        wire.ok("UNSELECT")
        lines = wire.ok(f"EXAMINE INBOX (QRESYNC ({cache.uidvalidity} {cache.modseq} 1:5))")
        assert b"* OK [CLOSED] previous mailbox closed" not in lines  # nothing was selected
        assert [vanished_uids(line) for line in lines if b"VANISHED" in line] == [{1}]
        assert [int(m.group(2)) for m in (_FETCH.match(line) for line in lines) if m] == [2]


def test_uidvalidity_mismatch_is_a_plain_select(ten: Any) -> None:
    with session(ten) as wire:
        lines = wire.ok("SELECT INBOX (QRESYNC (1 1 1:10))")
        assert not [line for line in lines if b"VANISHED" in line or b"FETCH" in line]


def test_uid_fetch_changedsince_vanished(ten: Any) -> None:
    # RFC 7162 §3.2.6 example: UID FETCH 300:500 (FLAGS) (CHANGEDSINCE n VANISHED)
    with session(ten) as wire, session(ten, qresync=False) as other:
        cache = ClientCache(wire)
        other.ok("SELECT INBOX")
        other.ok("UID STORE 2,6 +FLAGS.SILENT (\\Deleted)")
        other.ok("EXPUNGE")
        other.ok("UID STORE 4,8 +FLAGS.SILENT (\\Seen)")
        lines = wire.ok(f"UID FETCH 3:8 (FLAGS) (CHANGEDSINCE {cache.modseq} VANISHED)")
        assert lines[0] == b"* VANISHED (EARLIER) 6"  # 2 is outside the set
        fetched = [line for line in lines if b"FETCH (UID" in line and b"\\Seen" in line]
        assert [int(line.split()[4]) for line in fetched] == [4, 8]
        assert all(modseq_of(line) > cache.modseq for line in fetched)
        # The expunges this session had not heard of follow as VANISHED
        # (they change its sequence numbers), never as EXPUNGE.
        assert lines[-1] == b"* VANISHED 2,6"
        assert not [line for line in lines if line.endswith(b"EXPUNGE")]


def test_vanished_replaces_expunge(ten: Any) -> None:
    with session(ten) as wire, session(ten, qresync=False) as other:
        wire.ok("SELECT INBOX")
        other.ok("SELECT INBOX")
        wire.ok("UID STORE 2,3,5 +FLAGS.SILENT (\\Deleted)")
        assert wire.ok("EXPUNGE") == [b"* VANISHED 2:3,5"]  # RFC 7162 §3.2.10
        # The other session (no QRESYNC) gets classic EXPUNGEs.
        assert other.ok("NOOP")[:3] == [b"* 5 EXPUNGE", b"* 3 EXPUNGE", b"* 2 EXPUNGE"]
        lines = wire.ok("UID MOVE 7 Archive")
        assert lines[-1] == b"* VANISHED 7" and lines[0].startswith(b"* OK [COPYUID ")
        other.ok("UID STORE 1 +FLAGS.SILENT (\\Deleted)")
        other.ok("UID EXPUNGE 1")
        assert b"* VANISHED 1" in wire.ok("NOOP")
        # Pushed during IDLE, too.
        tag = wire.tag()
        wire.send(tag + b" IDLE\r\n")
        assert wire.line() == b"+ idling"
        other.ok("UID STORE 9 +FLAGS.SILENT (\\Deleted)")
        assert wire.line().startswith(b"* 4 FETCH (UID 9 FLAGS (\\Deleted \\Recent) MODSEQ (")
        other.ok("EXPUNGE")
        assert wire.line() == b"* VANISHED 9"
        wire.send(b"DONE\r\n")
        status, _ = wire.until(tag)
        assert status.startswith(b"OK")


def test_resync_after_tombstones_compacted(ten: Any) -> None:
    """Past the expunge log's floor, VANISHED (EARLIER) names every known UID
    the folder lacks (RFC 7162 §3.2.5.2 allows more than what is new)."""
    with session(ten) as wire, session(ten, qresync=False) as other:
        other.ok("SELECT INBOX")
        other.ok("UID STORE 1 +FLAGS.SILENT (\\Deleted)")
        other.ok("EXPUNGE")  # before the client's cache: it will not ask about 1...
        cache = ClientCache(wire)
        other.ok("UID STORE 4,5 +FLAGS.SILENT (\\Deleted)")
        other.ok("EXPUNGE")
        store = ten.ctx.store
        folder = ten.mailbox("alice@example.com").folder("INBOX")
        floor = folder.status().highestmodseq
        ten.call(store.runner.write, lambda txn: store.index.compact_tombstones(txn, folder.fid, floor))
        assert folder.expunge_log_floor() == floor and folder.expunged_since(cache.modseq) == []
        # ...but names the UID range it has seen, as clients do.
        lines = wire.ok(f"SELECT INBOX (QRESYNC ({cache.uidvalidity} {cache.modseq} 1:10))")
        [vanished] = [line for line in lines if b"VANISHED" in line]
        assert vanished_uids(vanished) == {1, 4, 5}  # 1: known-but-missing, allowed
        lines = wire.ok(f"UID FETCH 2:* (FLAGS) (CHANGEDSINCE {cache.modseq} VANISHED)")
        assert vanished_uids(lines[0]) == {4, 5}
        # A client at or above the floor gets the exact log again.
        lines = wire.ok(f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {floor} VANISHED)")
        assert lines == []


def test_known_but_missing_ranges_follow_the_uids_not_the_span() -> None:
    from array import array

    from xmail.protocols.imap.commands.selected import _gaps

    uids = array("L", [2, 3, 7, 10])
    assert list(_gaps(uids, [(1, 10)], 10)) == ["1", "4:6", "8:9"]
    assert list(_gaps(uids, [(3, 3), (5, 6), (8, 20)], 10)) == ["5:6", "8:9"]
    assert list(_gaps(array("L"), [(1, 5)], 5)) == ["1:5"]
    # A client may name every possible UID; only UIDs below UIDNEXT count.
    assert list(_gaps(uids, [(1, 4294967295)], 12)) == ["1", "4:6", "8:9", "11:12"]
