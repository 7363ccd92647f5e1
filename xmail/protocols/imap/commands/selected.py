# -*- test-case-name: tests.protocols.test_imap_select -*-
"""Entering and leaving the selected state, and staying in it: SELECT,
EXAMINE (RFC 3501 §6.3.1-2), CHECK, CLOSE, EXPUNGE (§6.4.1-3), UID EXPUNGE
(RFC 4315 §2.1), UNSELECT (RFC 3691) and IDLE (RFC 2177)."""

from __future__ import annotations

from xmail.protocols.imap.commands.mailbox import folder_key, open_folder
from xmail.protocols.imap.grammar import Request
from xmail.protocols.imap.model import SeqSet
from xmail.protocols.imap.session import AUTH, SELECTED, Bad, No, Session, State, command
from xmail.protocols.imap.sync import SelectedFolder

SYSTEM_FLAGS = ("\\Answered", "\\Flagged", "\\Deleted", "\\Seen", "\\Draft")


async def _select(session: Session, name: str, readonly: bool) -> str:
    # RFC 3501 §6.3.1: selecting closes the current mailbox first, even
    # when the new SELECT fails.
    session.deselect()
    folder = open_folder(session, name)
    records = folder.records()
    status = folder.status()
    view = SelectedFolder(folder, folder_key(session, folder.name), readonly, records, session.recent)
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
    session.untagged(b"%d RECENT" % len(view.recent))
    if first_unseen:
        session.untagged(b"OK [UNSEEN %d] first unseen" % first_unseen)
    session.untagged(b"OK [UIDVALIDITY %d] UIDs valid" % status.uidvalidity)
    uidnext = max(status.uidnext, view.uids[-1] + 1 if view.uids else 1)
    session.untagged(b"OK [UIDNEXT %d] predicted next UID" % uidnext)
    session.selected = view
    session.state = State.SELECTED
    return "[READ-ONLY] EXAMINE completed" if readonly else "[READ-WRITE] SELECT completed"


def send_flags(session: Session, view: SelectedFolder) -> None:
    """FLAGS and PERMANENTFLAGS (RFC 3501 §7.2.6, §7.1): at SELECT, and again
    when a STORE brings in a keyword the folder did not use yet."""
    flags = " ".join(SYSTEM_FLAGS + tuple(sorted(view.keywords)))
    session.untagged(f"FLAGS ({flags})".encode())
    if view.readonly:
        session.untagged(b"OK [PERMANENTFLAGS ()] read-only")
    else:
        # "\*": clients may create keywords (RFC 3501 §7.1).
        session.untagged(f"OK [PERMANENTFLAGS ({flags} \\*)] flags permitted".encode())


@command("SELECT", AUTH)
async def select(session: Session, request: Request) -> str:
    return await _select(session, request.args, readonly=False)


@command("EXAMINE", AUTH)
async def examine(session: Session, request: Request) -> str:
    return await _select(session, request.args, readonly=True)


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
    doomed = [r.uid for r in records if "\\Deleted" in r.flags]
    if not doomed:
        return []
    return list(await view.folder.expunge(doomed))


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
    if view is not None:
        view.on_change = lambda: session.flush_changes(True)
        session.flush_changes(True)
    try:
        line = await session.conn.read_raw_line()
    finally:
        if view is not None:
            view.on_change = None
    if line.strip().upper() != b"DONE":
        raise Bad("expected DONE")
    return "IDLE terminated"
