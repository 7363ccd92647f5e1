# -*- test-case-name: tests.protocols.test_imap_commands, tests.protocols.test_imap_qresync -*-
"""Entering and leaving the selected state, and staying in it: SELECT,
EXAMINE (RFC 3501 §6.3.1-2), CHECK, CLOSE, EXPUNGE (§6.4.1-3), UID EXPUNGE
(RFC 4315 §2.1), UNSELECT (RFC 3691) and IDLE (RFC 2177); the CONDSTORE
and QRESYNC select parameters (RFC 7162 §3.1.8, §3.2.5)."""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from typing import Any

from xmail.protocols.imap import rev2
from xmail.protocols.imap.commands.mailbox import folder_key, open_folder
from xmail.protocols.imap.grammar import QresyncParams, Request, SelectArgs, compress_numbers
from xmail.protocols.imap.model import SeqSet
from xmail.protocols.imap.search import SeqSetMatcher
from xmail.protocols.imap.session import AUTH, SELECTED, Bad, No, Session, State, command
from xmail.protocols.imap.sync import SelectedFolder, flags_lines, flags_with_recent


async def _select(session: Session, args: SelectArgs, readonly: bool) -> str:
    name = str(args)
    if args.qresync is not None and not session.qresync:
        raise Bad("QRESYNC needs ENABLE QRESYNC first")  # RFC 7162 §3.2.5
    # RFC 3501 §6.3.1: selecting closes the current mailbox first, even
    # when the new SELECT fails.
    had_selection = session.selected is not None
    session.deselect()
    if had_selection and (session.qresync or session.rev2):
        # RFC 7162 §3.2.11, RFC 9051 §6.3.2: the boundary between the old
        # mailbox's responses and the new one's.
        session.untagged(b"OK [CLOSED] previous mailbox closed")
    if args.condstore:
        session.enable_condstore()  # RFC 7162 §3.1: a CONDSTORE enabling command
    folder = open_folder(session, name)
    # Status first: a HIGHESTMODSEQ no newer than the records read below, so
    # a client resyncing from it later misses nothing (RFC 7162 §3.1.2.1).
    status = folder.status()
    records = folder.records()
    view = SelectedFolder(folder, folder_key(session, folder), readonly, records, session.recent,
                          rev2=session.rev2)
    view.condstore = session.condstore
    view.qresync = session.qresync
    keywords: set[str] = set()
    first_unseen = 0
    for seq, record in enumerate(records, 1):
        if record.flags:
            keywords.update(f for f in record.flags if not f.startswith("\\"))
        if not first_unseen and "\\Seen" not in record.flags:
            first_unseen = seq
    view.keywords = keywords
    send_flags(session, view)
    session.untagged(b"%d EXISTS" % view.exists)
    if session.rev2:
        # RFC 9051 §6.3.2: a LIST response names the mailbox; no RECENT and
        # no UNSEEN code (Appendix E).
        session.untagged(rev2.select_list_line(session, folder))
    else:
        session.untagged(b"%d RECENT" % len(view.recent))
        if first_unseen:
            session.untagged(b"OK [UNSEEN %d] first unseen" % first_unseen)
    session.untagged(b"OK [UIDVALIDITY %d] UIDs valid" % status.uidvalidity)
    uidnext = max(status.uidnext, view.uids[-1] + 1 if view.uids else 1)
    session.untagged(b"OK [UIDNEXT %d] predicted next UID" % uidnext)
    # RFC 7162 §3.1.2.1: every SELECT/EXAMINE reports HIGHESTMODSEQ (the
    # index keeps MODSEQs for every folder, so never NOMODSEQ).
    session.untagged(b"OK [HIGHESTMODSEQ %d] highest" % status.highestmodseq)
    session.selected = view
    session.state = State.SELECTED
    if args.qresync is not None and args.qresync.uidvalidity == status.uidvalidity:
        _resync(session, view, args.qresync, uidnext)
    return "[READ-ONLY] EXAMINE completed" if readonly else "[READ-WRITE] SELECT completed"


def _resync(session: Session, view: SelectedFolder, params: QresyncParams, uidnext: int) -> None:
    """RFC 7162 §3.2.5.2: what changed since the client's MODSEQ — one
    VANISHED (EARLIER) for what it knows and is gone, then a FETCH of each
    message whose flags or existence changed.  Cost follows the changes,
    not the folder, unless the tombstones were compacted past the client."""
    known = SeqSetMatcher(params.known_uids, uidnext - 1) if params.known_uids is not None else None
    vanished = vanished_since(view, params.modseq, known, uidnext - 1)
    if vanished:
        session.untagged(b"VANISHED (EARLIER) " + vanished.encode("ascii"))
    lines = []
    changed = view.folder.changed_since(params.modseq)
    lines.extend(view.announce_keywords(changed))  # RFC 3501 §7.2.6
    for record in changed:
        if known is not None and record.uid not in known:
            continue
        seq = view.seq_of(record.uid)
        if seq is None:
            continue  # arrived after our listing: an EXISTS will follow
        lines.append(b"* %d FETCH (UID %d FLAGS %s MODSEQ (%d))\r\n" % (
            seq, record.uid, flags_with_recent(record.flags, record.uid in view.recent), record.modseq))
    session.conn.write(b"".join(lines))


def vanished_since(view: SelectedFolder, modseq: int, within: Any, last_uid: int) -> str:
    """UIDs (within the matcher `within`, or all) expunged after modseq, as
    a compact set.  Exact from the tombstones when the log reaches back to
    modseq; else every UID in range that the folder no longer has, which
    RFC 7162 §3.2.5.2 allows ("MAY ... include UIDs of messages that were
    expunged before the modseq")."""
    folder = view.folder
    if modseq >= folder.expunge_log_floor():
        return compress_numbers(uid for uid in folder.expunged_since(modseq)
                                if within is None or uid in within)
    spans = [(1, last_uid)] if within is None else zip(within.lows, within.highs, strict=True)
    return ",".join(_gaps(view.uids, spans, last_uid))


def _gaps(uids: Any, spans: Any, last: int) -> Iterator[str]:
    """The numbers of the (sorted, disjoint) spans that are not in the sorted
    array uids, as set ranges; work grows with the UIDs inside the spans,
    not with the span widths (a client may send 1:4294967295)."""
    for low, high in spans:
        high = min(high, last)
        at = bisect.bisect_left(uids, low)
        cur = low
        while cur <= high:
            nxt = uids[at] if at < len(uids) else high + 1
            if nxt > high:
                nxt = high + 1
            if nxt > cur:
                yield str(cur) if nxt - 1 == cur else f"{cur}:{nxt - 1}"
            cur = nxt + 1
            at += 1


def send_flags(session: Session, view: SelectedFolder) -> None:
    """FLAGS and PERMANENTFLAGS (RFC 3501 §7.2.6, §7.1): at SELECT, and again
    when a STORE brings in a keyword the folder did not use yet."""
    for line in flags_lines(view.keywords, view.readonly):
        session.conn.write(line)


@command("SELECT", AUTH)
async def select(session: Session, request: Request) -> str:
    return await _select(session, _select_args(request.args), readonly=False)


@command("EXAMINE", AUTH)
async def examine(session: Session, request: Request) -> str:
    return await _select(session, _select_args(request.args), readonly=True)


def _select_args(args: Any) -> SelectArgs:
    return args if isinstance(args, SelectArgs) else SelectArgs.make(args)


@command("CHECK", SELECTED)
async def check(session: Session, request: Request) -> str:
    # RFC 3501 §6.4.1: every write is already durable when acknowledged.
    return "CHECK completed"


async def _expunge_deleted(session: Session, within: SeqSet | None) -> list[int]:
    view = session.selected
    assert view is not None
    if view.readonly:
        raise No("folder is read-only", "READ-ONLY")
    if within is not None:
        allowed = {uid for _, uid in view.resolve(within, by_uid=True)}
        records = view.folder.records(sorted(allowed))
    else:
        records = view.folder.records()
    doomed = [r for r in records if "\\Deleted" in r.flags]
    if not doomed:
        return []
    removed = list(await view.folder.expunge([r.uid for r in doomed]))
    audit = session.ctx.audit
    if audit is not None and session.account is not None:
        # The mail log (issue #8): outside Recycle an expunge recycles.
        recycled = view.folder.name != "Recycle"
        gone = set(removed)
        for record in doomed:
            if record.uid in gone:
                audit.mail("expunged", account=session.account.address, folder=view.folder.name,
                           uid=record.uid, size=record.size, recycled=recycled, result="ok")
    return removed


@command("EXPUNGE", SELECTED)
async def expunge(session: Session, request: Request) -> str:
    within = request.args if request.uid else None  # UID EXPUNGE (RFC 4315 §2.1)
    removed = await _expunge_deleted(session, within)
    assert session.selected is not None
    for line in session.selected.remove(removed):
        session.conn.write(line)
    return "EXPUNGE completed"


@command("CLOSE", SELECTED)
async def close(session: Session, request: Request) -> str:
    # RFC 3501 §6.4.2: expunge silently (unless read-only), then deselect.
    assert session.selected is not None
    if not session.selected.readonly:
        await _expunge_deleted(session, None)
    session.deselect()
    return "CLOSE completed"


@command("UNSELECT", SELECTED)
async def unselect(session: Session, request: Request) -> str:
    session.deselect()  # RFC 3691: like CLOSE without the expunge
    return "UNSELECT completed"


@command("IDLE", AUTH)
async def idle(session: Session, request: Request) -> str:
    # RFC 2177 §3: changes are sent as they happen until the client says DONE.
    session.conn.write(b"+ idling\r\n")
    view = session.selected if session.state is State.SELECTED else None
    # RFC 5465 §3: NOTIFY's notifications for other mailboxes go out during IDLE too.
    session.idling = True
    previous = view.on_change if view is not None else None
    if view is not None:
        view.on_change = lambda: session.flush_changes(True)
    session.flush_changes(True)
    try:
        line = await session.conn.read_raw_line()
    finally:
        session.idling = False
        if view is not None:
            view.on_change = previous  # NOTIFY's hook, if any
    if line.strip().upper() != b"DONE":
        raise Bad("expected DONE")
    return "IDLE terminated"
