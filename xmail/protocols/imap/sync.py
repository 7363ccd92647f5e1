# -*- test-case-name: tests.protocols.test_imap_sync -*-
"""What a session knows of its selected folder, and keeping it in step
with the store (RFC 3501 §5.2, §7.3.1, §7.4.1).

`SelectedFolder` holds the session's view: the UIDs in message-sequence
order (an `array` of 32-bit ints: 400 kB for 100,000 messages) and this
session's \\Recent set.  It listens to the folder (IFolderListener) and
queues what other sessions and processes changed; `flush()` turns the queue
into untagged responses at a point where the session may send them:

- new messages -> EXISTS (and RECENT) — any time;
- expunges -> one EXPUNGE per message, highest sequence number first, so
  the numbers of the others stay valid while the client applies them; only
  when the running command allows it (not during FETCH, STORE and SEARCH
  by sequence number, RFC 3501 §7.4.1);
- flag changes -> FETCH (FLAGS ...) for messages still in the view, with
  MODSEQ once the client enabled CONDSTORE (RFC 7162 §3.1.2);
- with QRESYNC enabled, expunges go out as one `VANISHED uid-set` instead
  of EXPUNGEs (RFC 7162 §3.2.10), under the same timing rules.

The session's own changes come back from the store too; its STORE answers
them already, so those are recognised by (uid, modseq) and dropped.

`RecentTracker` is the server's memory behind \\Recent (the store keeps
none): the first session to see a message gets \\Recent for it, in this
process or, with several workers, in any of them.
"""

from __future__ import annotations

import bisect
import time
from array import array
from collections.abc import Callable, Iterable
from typing import Any

from zope.interface import implementer

from xmail.protocols.imap.grammar import compress_numbers
from xmail.protocols.imap.model import STAR, SeqSet
from xmail.store.interfaces import FolderChanges, IFolderListener, MessageRecord, StoreError

_OWN_CHANGES_LIMIT = 10000


class LocalRecentClaims:
    """The claims of one process: RecentTracker's default store."""

    def __init__(self) -> None:
        self._claimed: dict[str, int] = {}

    def update(self, key: str, change: Callable[[int | None], int | None]) -> int | None:
        """Atomically: new = change(old claim or None); stored unless None.
        -> the old claim."""
        old = self._claimed.get(key)
        new = change(old)
        if new is not None:
            self._claimed[key] = new
        return old


class RecentTracker:
    """Per (user, folder, UIDVALIDITY): the highest UID some session already
    claimed as \\Recent (RFC 3501 §2.3.2: only the first session to be told
    of a message sees it \\Recent).  The claims live in `claims`: this
    process's memory, or with several workers a table they all share
    (ServerContext.recent_claims), so a session in another worker is not
    told again."""

    def __init__(self, clock: Callable[[], float] = time.time, claims: Any = None):
        self.started = clock()
        self._claims = claims if claims is not None else LocalRecentClaims()

    @staticmethod
    def _key(key: tuple[Any, ...]) -> str:
        return "\0".join(str(part) for part in key)

    def _read(self, key: tuple[str, str, int]) -> int | None:
        return self._claims.update(self._key(key), lambda old: None)

    def known(self, key: tuple[str, str, int]) -> bool:
        return self._read(key) is not None

    def first_sight(self, key: tuple[str, str, int], records: Iterable[MessageRecord]) -> None:
        """Messages that arrived before this process started are nobody's
        \\Recent (we cannot know whether a session saw them)."""
        highest = 0
        for record in records:
            if record.internaldate < self.started and record.uid > highest:
                highest = record.uid
        self._claims.update(self._key(key), lambda old: highest if old is None else None)

    def claim(self, key: tuple[str, str, int], uids: Iterable[int], *, take: bool = True) -> list[int]:
        """The UIDs among uids (ascending) that this caller is first to see;
        with take=False (EXAMINE, RFC 3501 §6.3.2) they stay \\Recent for
        the next session too."""
        uids = sorted(uids)  # linear when already ascending, as callers pass them
        mine: list[int] = []

        def change(old: int | None) -> int | None:
            # Under the shared table's lock with several workers: keep it short.
            mine[:] = uids[bisect.bisect_right(uids, old or 0):]
            return mine[-1] if mine and take else None

        self._claims.update(self._key(key), change)
        return mine

    def claimed(self, key: tuple[str, str, int]) -> int:
        return self._read(key) or 0

    def unclaimed(self, key: tuple[str, str, int], uids: Iterable[int]) -> int:
        """How many of uids would be \\Recent for the next session (STATUS)."""
        claimed = self._read(key) or 0
        return sum(1 for uid in uids if uid > claimed)


SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


def flags_lines(keywords: Iterable[str], readonly: bool) -> list[bytes]:
    """FLAGS and PERMANENTFLAGS (RFC 3501 §7.2.6, §7.1): at SELECT, and again
    before any response uses a keyword the session was not told of yet."""
    flags = " ".join(SYSTEM_FLAGS + tuple(sorted(keywords)))
    out = [f"* FLAGS ({flags})\r\n".encode()]
    if readonly:
        out.append(b"* OK [PERMANENTFLAGS ()] read-only\r\n")
    else:
        # "\*": clients may create keywords (RFC 3501 §7.1).
        out.append(f"* OK [PERMANENTFLAGS ({flags} \\*)] flags permitted\r\n".encode())
    return out


def flags_with_recent(flags: Iterable[str], recent: bool) -> bytes:
    items = [f.encode("utf-8") for f in sorted(flags)]
    if recent:
        items.append(b"\\Recent")
    return b"(" + b" ".join(items) + b")"


@implementer(IFolderListener)
class SelectedFolder:
    """The session's view of its selected folder."""

    def __init__(self, folder: Any, key: tuple[str, str, int], readonly: bool,
                 records: list[MessageRecord], recent: RecentTracker, *, rev2: bool = False):
        self.folder = folder
        self.key = key
        self.readonly = readonly
        self.uids = array("L", (r.uid for r in records))
        self._tracker = recent
        # RFC 9051 Appendix E: IMAP4rev2 has no \\Recent; a rev2 session
        # neither shows nor claims it (a rev1 session still sees those
        # messages as recent).
        self.rev2 = rev2
        self.recent: set[int] = set()
        if not rev2:
            if not recent.known(key):
                recent.first_sight(key, records)
            self.recent = set(recent.claim(key, self.uids, take=not readonly))
        self._new: list[int] = []
        self._expunged: set[int] = set()
        self._flag_changes: dict[int, MessageRecord] = {}
        self._own: dict[int, int] = {}  # uid -> modseq of our own flag change
        # Called when changes arrive (IDLE sends them at once).
        self.on_change: Callable[[], None] | None = None
        self.keywords: set[str] = set()  # keywords announced in FLAGS
        self.condstore = False  # RFC 7162: MODSEQ in unsolicited FETCH
        self.qresync = False  # RFC 7162 §3.2.10: VANISHED instead of EXPUNGE
        self._listening = True
        folder.subscribe_changes(self)

    # -- store notifications -----------------------------------------------------
    def folder_changed(self, folder: Any, changes: FolderChanges) -> None:
        if not self._listening:
            return
        highest = self.uids[-1] if self.uids else 0
        pending_new = set(self._new)
        for uid in changes.new_uids:
            if uid > highest and uid not in pending_new:
                self._new.append(uid)
                pending_new.add(uid)
        for uid in changes.expunged_uids:
            if uid in pending_new:
                self._new.remove(uid)
                pending_new.discard(uid)
            elif self.seq_of(uid) is not None:
                self._expunged.add(uid)
        for record in changes.flag_changes:
            if self._own.get(record.uid, -1) >= record.modseq:
                continue
            self._flag_changes[record.uid] = record
        if self.on_change is not None and self.has_pending():
            self.on_change()

    def pending_new(self) -> list[int]:
        """UIDs the next flush announces with EXISTS (RFC 5465 §5.1 fetches them)."""
        return sorted(self._new)

    def has_pending(self) -> bool:
        return bool(self._new or self._expunged or self._flag_changes)

    def poll(self) -> None:
        """Pick up changes made by other processes (one index read).  A
        folder deleted meanwhile is not an error here; the command that
        touches it gets its NO."""
        try:
            self.folder.poll_changes()
        except StoreError:
            pass

    def note_own_flags(self, records: Iterable[MessageRecord]) -> None:
        if len(self._own) > _OWN_CHANGES_LIMIT:
            self._own.clear()
        for record in records:
            self._own[record.uid] = record.modseq
            pending = self._flag_changes.get(record.uid)
            if pending is not None and pending.modseq <= record.modseq:
                del self._flag_changes[record.uid]

    def told_flags(self, record: MessageRecord) -> None:
        """A FETCH just showed the client this record's FLAGS: a pending
        notice of the same (or an older) change would repeat it."""
        pending = self._flag_changes.get(record.uid)
        if pending is not None and pending.modseq <= record.modseq:
            del self._flag_changes[record.uid]

    # -- flushing ------------------------------------------------------------------------
    def flush(self, allow_expunge: bool) -> list[bytes]:
        out: list[bytes] = []
        if allow_expunge and self._expunged:
            out.extend(self.remove(self._expunged))
            self._expunged = set()
        if self._new:
            new = sorted(self._new)
            self._new = []
            self.uids.extend(new)
            out.append(b"* %d EXISTS\r\n" % len(self.uids))
            if not self.rev2:  # RFC 9051 Appendix E: no RECENT response
                self.recent.update(self._tracker.claim(self.key, new, take=not self.readonly))
                out.append(b"* %d RECENT\r\n" % len(self.recent))
        if self._flag_changes:
            changes, self._flag_changes = self._flag_changes, {}
            out.extend(self.announce_keywords(changes.values()))
            for uid in sorted(changes):
                seq = self.seq_of(uid)
                if seq is None:
                    continue
                record = changes[uid]
                out.append(b"* %d FETCH (UID %d FLAGS %s%s)\r\n" % (
                    seq, uid, flags_with_recent(record.flags, uid in self.recent),
                    self.modseq_item(record)))
        return out

    def announce_keywords(self, records: Iterable[MessageRecord]) -> list[bytes]:
        """RFC 3501 §7.2.6: a FLAGS response (and PERMANENTFLAGS) before any
        FETCH shows a keyword this session was not told of — another session
        may have set it."""
        new = {f for r in records for f in r.flags if not f.startswith("\\")} - self.keywords
        if not new:
            return []
        self.keywords |= new
        return flags_lines(self.keywords, self.readonly)

    def modseq_item(self, record: MessageRecord) -> bytes:
        """" MODSEQ (n)" for a FETCH carrying FLAGS once CONDSTORE is on."""
        return b" MODSEQ (%d)" % record.modseq if self.condstore else b""

    def remove(self, uids: Iterable[int]) -> list[bytes]:
        """Drop expunged UIDs from the view; the EXPUNGE lines to send."""
        seqs = sorted((s for s in (self.seq_of(uid) for uid in uids) if s is not None), reverse=True)
        if not seqs:
            return []
        doomed = {self.uids[seq - 1] for seq in seqs}
        # One pass over the array, not one memmove per message.
        self.uids = array("L", (uid for uid in self.uids if uid not in doomed))
        self.recent -= doomed
        for uid in doomed:
            self._flag_changes.pop(uid, None)
        if self.qresync:
            # RFC 7162 §3.2.10: one VANISHED (without EARLIER) with UIDs.
            return [b"* VANISHED " + compress_numbers(doomed).encode("ascii") + b"\r\n"]
        return [b"* %d EXPUNGE\r\n" % seq for seq in seqs]

    # -- numbering -----------------------------------------------------------------------
    @property
    def exists(self) -> int:
        return len(self.uids)

    def seq_of(self, uid: int) -> int | None:
        i = bisect.bisect_left(self.uids, uid)
        if i < len(self.uids) and self.uids[i] == uid:
            return i + 1
        return None

    def resolve(self, seqset: SeqSet, by_uid: bool) -> list[tuple[int, int]]:
        """(seq, uid) pairs of a sequence set, ascending, without duplicates.
        Raises ValueError for a sequence number beyond EXISTS (RFC 3501 §9:
        "*" is the last message; a UID set may name UIDs that do not exist)."""
        uids = self.uids
        n = len(uids)
        if by_uid:
            last = uids[-1] if n else 0
            spans = []
            for r in seqset.ranges:
                low = last if r.low == STAR else r.low
                high = last if r.high == STAR else r.high
                if low > high:
                    low, high = high, low
                i = bisect.bisect_left(uids, low)
                j = bisect.bisect_right(uids, high)
                if i < j:
                    spans.append((i, j))
        else:
            spans = []
            for r in seqset.ranges:
                if n == 0 and STAR in (r.low, r.high):
                    continue  # "1:*" in an empty folder names nothing (lenient, as clients expect)
                low = n if r.low == STAR else r.low
                high = n if r.high == STAR else r.high
                if low > high:
                    low, high = high, low
                if high > n:
                    raise ValueError("message sequence number out of range")
                if low >= 1:
                    spans.append((low - 1, high))
        return _merge(spans, uids)

    def close(self) -> None:
        if self._listening:
            self._listening = False
            self.on_change = None
            self.folder.unsubscribe_changes(self)


def _merge(spans: list[tuple[int, int]], uids: array) -> list[tuple[int, int]]:
    if not spans:
        return []
    spans.sort()
    out: list[tuple[int, int]] = []
    cur_i, cur_j = spans[0]
    for i, j in spans[1:]:
        if i <= cur_j:
            cur_j = max(cur_j, j)
        else:
            out.extend((k + 1, uids[k]) for k in range(cur_i, cur_j))
            cur_i, cur_j = i, j
    out.extend((k + 1, uids[k]) for k in range(cur_i, cur_j))
    return out
