# -*- test-case-name: tests.protocols.test_imap_notify -*-
"""NOTIFY (RFC 5465): `NOTIFY SET [STATUS] (filter events)...` and
`NOTIFY NONE`.  What is watched and queued lives in ../notify.py; this
module turns the command into a NotifyState and decides when the session
may write what it holds."""

from __future__ import annotations

from typing import Any

from xmail.protocols.imap import fetch as fetchmod
from xmail.protocols.imap import notify as notifymod
from xmail.protocols.imap.commands.mailbox import status_line
from xmail.protocols.imap.commands.message import _record_item
from xmail.protocols.imap.commands.multisearch import source_mailboxes
from xmail.protocols.imap.grammar import NotifyArgs, Request
from xmail.protocols.imap.session import AUTH, Bad, No, Session, command
from xmail.store.interfaces import StoreError


@command("NOTIFY", AUTH)
async def notify(session: Session, request: Request) -> str:
    args: NotifyArgs = request.args
    try:
        unsupported = notifymod.validate(args)
    except notifymod.NotifyError as e:
        raise Bad(str(e)) from None
    if unsupported:
        # RFC 5465 §3.1: NO [BADEVENT (supported events)]; the NOTIFY in
        # force stays as it was.
        raise No("unsupported event " + " ".join(unsupported), notifymod.badevent_code())
    old, session.notify = session.notify, None
    if old is not None:
        old.unhook(session.selected)
        old.close()
    if args.groups is None:
        return "NOTIFY completed"  # RFC 5465 §3.2: NOTIFY NONE
    state = _new_state(session, args)
    session.notify = state
    watched = _watch(session, state)
    state.watch_list(session.mailbox)
    state.hook(session.selected)
    if args.status:
        # RFC 5465 §3.1: STATUS for each mailbox of the event groups now, so
        # the client has a starting point (the selected one excepted: it
        # knows that one from SELECT).
        selected = session.selected.folder.name if session.selected is not None else None
        for folder, events in watched:
            if folder.name == selected:
                continue
            line = _status(session, folder, folder.name, events)
            if line is not None:
                session.untagged(line)
    return "NOTIFY completed"


def _new_state(session: Session, args: NotifyArgs) -> notifymod.NotifyState:
    state: notifymod.NotifyState

    def kick() -> None:
        _kick(session, state)

    def render(name: str, events: frozenset[str]) -> bytes | None:
        watcher = state.watchers.get(name)
        return _status(session, watcher.folder, name, events) if watcher is not None else None

    def fetch_new(uids: list[int]) -> list[bytes]:
        return _fetch_new(session, state, uids)

    def rewatch() -> None:
        if session.notify is state and session.mailbox is not None:
            try:
                _watch(session, state)
            except StoreError:
                pass  # the next change tries again

    state = notifymod.NotifyState(args, kick=kick, render=render, fetch_new=fetch_new, rewatch=rewatch,
                                  utf8=lambda: session.rev2)
    return state


def _watch(session: Session, state: notifymod.NotifyState) -> list[tuple[Any, frozenset[str]]]:
    """The folders the non-selected filters name now (RFC 5465 §6), with
    the events each asked for."""
    events_of: dict[str, set[str]] = {}
    for group in state.other_groups:
        if not group.events:
            continue  # `NONE`: nothing for these mailboxes
        for name in source_mailboxes(session, ((group.filter, group.mailboxes),)):
            events_of.setdefault(name, set()).update(group.events)
    pairs = []
    for name, events in events_of.items():
        try:
            folder = session.mailbox.folder(name)
        except StoreError:
            continue  # deleted meanwhile
        pairs.append((folder, frozenset(events)))
    state.watch(pairs)
    return pairs


def _status(session: Session, folder: Any, name: str, events: frozenset[str]) -> bytes | None:
    """RFC 5465 §5.1-§5.3: the STATUS a change of a non-selected mailbox
    sends: MESSAGES and UIDNEXT (new and expunged messages), UIDVALIDITY,
    UNSEEN when flag changes were asked for, HIGHESTMODSEQ once CONDSTORE
    is on (RFC 7162 §3.1)."""
    items = ["MESSAGES", "UIDNEXT", "UIDVALIDITY"]
    if "FlagChange" in events:
        items.append("UNSEEN")
    if session.condstore:
        items.append("HIGHESTMODSEQ")
    try:
        return status_line(session, folder, name, tuple(items))
    except StoreError:
        return None  # deleted meanwhile: nothing to report


def _kick(session: Session, state: notifymod.NotifyState) -> None:
    """Something is pending: write it now if the session may speak, else it
    goes out with the responses of the running command (RFC 5465 §3)."""
    if session.notify is not state or not session.may_push():
        return
    if state.waiting_for_drain:
        return
    d = session.conn.drain()
    if d is not None:
        # The client is not reading: hold (coalesced, bounded, §5.8) and
        # try again when its buffer drained.
        state.waiting_for_drain = True

        def drained(_: Any) -> None:
            state.waiting_for_drain = False
            _kick(session, state)

        d.addCallbacks(drained, lambda _: None)
        return
    if session.selected is not None and state.selected_group is not None:
        # `selected`: expunges at once; `selected-delayed`: held for a
        # command that may carry them (RFC 5465 §6, RFC 3501 §7.4.1).
        session.flush_changes(state.selected_immediate or session.idling)
    else:
        session.flush_notifications()


def _fetch_new(session: Session, state: notifymod.NotifyState, uids: list[int]) -> list[bytes]:
    """RFC 5465 §5.1: `MessageNew (fetch-att...)` for the selected mailbox:
    a FETCH per new message right after the EXISTS.  The attributes are
    those validate() accepts: index data, cached structure and header
    sections, nothing that reads a body or sets \\Seen."""
    view = session.selected
    group = state.selected_group
    if view is None or group is None:
        return []
    atts = list(group.fetch_atts)
    folder = view.folder
    out = []
    try:
        records = folder.records(uids)
    except StoreError:
        return []
    for record in records:
        seq = view.seq_of(record.uid)
        if seq is None:
            continue
        items: list[bytes] = []
        structure: dict[str, Any] | None = None
        try:
            for att in atts:
                item = _record_item(view, record, att.name)
                if item is not None:
                    items.append(item)
                    continue
                if structure is None:
                    structure = fetchmod.structure_of(folder.meta(record.uid),
                                                      lambda uid=record.uid: _read_all(folder, uid))
                if att.name == "ENVELOPE":
                    items.append(b"ENVELOPE " + fetchmod.render_envelope(structure))
                elif att.name in ("BODY", "BODYSTRUCTURE"):
                    items.append(att.name.encode() + b" "
                                 + fetchmod.render_body(structure, att.name == "BODYSTRUCTURE"))
                else:
                    selection = fetchmod.select_body(att, structure)
                    name = att.response_name().encode("ascii")
                    if selection is None:
                        items.append(name + b" NIL")
                        continue
                    with folder.open_message(record.uid) as message_file:
                        data = fetchmod.read_selection(selection, message_file)
                    items.append(name + b" {%d}\r\n" % len(data) + data)
        except StoreError:
            continue  # expunged meanwhile: its EXPUNGE follows
        if "FLAGS" in (a.name for a in atts):
            view.told_flags(record)
        out.append(b"* %d FETCH (%s)\r\n" % (seq, b" ".join(items)))
    return out


def _read_all(folder: Any, uid: int) -> bytes:
    with folder.open_message(uid) as message_file:
        return message_file.read()
