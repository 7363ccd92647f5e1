# -*- test-case-name: tests.protocols.test_imap_notify -*-
"""What a NOTIFY SET (RFC 5465) asked for, and the session's queue of
notifications for mailboxes it has not selected.

    C: n1 NOTIFY SET STATUS (selected (MessageNew (UID FLAGS) MessageExpunge))
          (personal (MessageNew MessageExpunge FlagChange))
    S: * STATUS Sent (MESSAGES 3 UIDNEXT 4 UIDVALIDITY 9 UNSEEN 0)
    S: n1 OK NOTIFY completed
       ... another session delivers into Sent ...
    S: * STATUS Sent (MESSAGES 4 UIDNEXT 5 UIDVALIDITY 9 UNSEEN 1)

Changes reach this module the way they reach IDLE: through the store's
change notification (IFolderListener, xmail/store/notify.py), which hears
this process at once and the other worker processes by datagram.  Nothing
polls.  Each watched folder gets a `FolderWatcher`; what it hears is
coalesced into one pending STATUS per mailbox, sent when the session may
speak (no command running, or IDLE) or with the next command's responses.

The selected mailbox is not watched here: its SelectedFolder already hears
of its changes (sync.py); NOTIFY only decides when those go out (§5.1-§5.3:
`selected` at once, `selected-delayed` with expunges held until a command
that may carry them, RFC 3501 §7.4.1).

A client that stops reading while changes keep coming gets
`* OK [NOTIFICATIONOVERFLOW]` once and then no more notifications, as if it
had sent NOTIFY NONE (§5.8): the queue never grows without bound.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from zope.interface import implementer

from xmail.protocols.imap.grammar import EventGroup, NotifyArgs
from xmail.protocols.imap.response import mailbox as wire_mailbox
from xmail.store.interfaces import FolderChanges, IFolderListener, IFolderListListener, StoreError

# RFC 5465 §5: the events we send.  AnnotationChange and the METADATA
# events need ANNOTATE/METADATA, which xmail does not have: refused with
# NO [BADEVENT], as §3.1 provides for events a server does not support.
SUPPORTED_EVENTS = ("MessageNew", "MessageExpunge", "FlagChange", "MailboxName", "SubscriptionChange")
MESSAGE_EVENTS = frozenset({"MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange"})
MAILBOX_EVENTS = frozenset({"MailboxName", "SubscriptionChange", "MailboxMetadataChange"})
SELECTED_FILTERS = frozenset({"selected", "selected-delayed"})

# MessageNew fetch attributes we can answer from the index and the cached
# structure without reading a message body (§5.1: sent with the EXISTS).
NOTIFY_FETCH_ATTS = frozenset({"UID", "FLAGS", "INTERNALDATE", "RFC822.SIZE", "MODSEQ",
                               "ENVELOPE", "BODY", "BODYSTRUCTURE", "BODY[]"})

_HEADER_SECTIONS = frozenset({"HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "MIME"})

MAX_BACKLOG = 1000  # change reports held for a client that cannot take them (§5.8)


class NotifyError(Exception):
    """A NOTIFY SET that breaks a rule of RFC 5465 §3.1 / §5: tagged BAD."""


def validate(args: NotifyArgs) -> list[str]:
    """Check the rules of §3.1 and §5; raises NotifyError (BAD).  Returns
    the events we do not support (for NO [BADEVENT]), empty when all are."""
    unsupported: list[str] = []
    selected_groups = 0
    for group in args.groups or ():
        events = set(group.events)
        if group.filter in SELECTED_FILTERS:
            selected_groups += 1
            if selected_groups > 1:
                raise NotifyError("only one selected or selected-delayed group")  # §6
            if events & MAILBOX_EVENTS or "ServerMetadataChange" in events:
                raise NotifyError("only message events apply to the selected mailbox")  # §6
        elif group.fetch_atts:
            raise NotifyError("MessageNew fetch attributes apply to the selected mailbox only")  # §5.1
        # §5.1, §5.2: MessageNew and MessageExpunge go together, and
        # FlagChange / AnnotationChange need both.
        if ("MessageNew" in events) != ("MessageExpunge" in events):
            raise NotifyError("MessageNew and MessageExpunge must be given together")
        if events & {"FlagChange", "AnnotationChange"} and "MessageNew" not in events:
            raise NotifyError("FlagChange needs MessageNew and MessageExpunge")
        for att in group.fetch_atts:
            if att.name not in NOTIFY_FETCH_ATTS or att.name == "BODY[]" and not (
                    att.peek and att.section is not None and att.section.text in _HEADER_SECTIONS):
                # Reading (and marking \\Seen) bodies unasked is not what a
                # notification is for, and a body read would block the
                # reactor; BODY.PEEK[HEADER.FIELDS (...)] is what clients use.
                raise NotifyError(f"fetch attribute {att.response_name()} not supported with MessageNew")
        for event in group.events:
            if event not in SUPPORTED_EVENTS and event not in unsupported:
                unsupported.append(event)
    return unsupported


def badevent_code() -> str:
    """§3.1: BADEVENT lists the events the server supports."""
    return "BADEVENT (" + " ".join(SUPPORTED_EVENTS) + ")"


@implementer(IFolderListener)
class FolderWatcher:
    """Listens to one non-selected folder for a NotifyState."""

    def __init__(self, state: NotifyState, folder: Any, events: frozenset[str]):
        self.state = state
        self.folder = folder
        self.events = events
        folder.subscribe_changes(self)

    def folder_changed(self, folder: Any, changes: FolderChanges) -> None:
        # §5.1-§5.3: which changes the client asked to hear of.
        if (changes.new_uids and "MessageNew" in self.events
                or changes.expunged_uids and "MessageExpunge" in self.events
                or changes.flag_changes and "FlagChange" in self.events):
            self.state.changed(self.folder.name)

    def close(self) -> None:
        self.folder.unsubscribe_changes(self)


def group_names(group: EventGroup, name: str, subscribed: set[str]) -> bool:
    """Whether a non-selected filter (RFC 5465 §6) covers mailbox `name`,
    existing or not (a deleted or renamed-away name is judged too)."""
    if group.filter == "personal":
        return True  # every mailbox here is the user's own
    if group.filter == "inboxes":
        return name == "INBOX"
    if group.filter == "subscribed":
        return name in subscribed
    if group.filter == "mailboxes":
        return name in group.mailboxes
    # subtree: the mailbox itself and all below it
    return any(name == box or name.startswith(box + DELIMITER) for box in group.mailboxes)


DELIMITER = "/"  # the hierarchy delimiter (docs: folders), as LIST says it


def _list_line(attrs: str, name: str, extra: bytes = b"", utf8: bool = False) -> bytes:
    return b"* LIST (" + attrs.encode("ascii") + b') "/" ' + wire_mailbox(name, utf8) + extra + b"\r\n"


@implementer(IFolderListListener)
class ListWatcher:
    """Listens to the user's folder list for a NotifyState: MailboxName
    (§5.4) and SubscriptionChange (§5.5) as LIST responses, and keeps the
    per-folder watchers in step with the folders the filters name."""

    def __init__(self, state: NotifyState, mailbox: Any):
        self.state = state
        self.mailbox = mailbox
        self.folders, self.subscribed = self._read()
        mailbox.subscribe_list_changes(self)

    def _read(self) -> tuple[dict[int, str], set[str]]:
        infos = self.mailbox.list_folders()
        return ({i.ident: i.name for i in infos if i.ident}, set(self.mailbox.subscriptions()))

    def folder_list_changed(self, mailbox: Any) -> None:
        try:
            folders, subscribed = self._read()
        except StoreError:
            return
        old_folders, old_subscribed = self.folders, self.subscribed
        self.folders, self.subscribed = folders, subscribed
        lines: list[bytes] = []
        renamed: set[str] = set()
        wants = self.state.wants_mailbox_event
        utf8 = self.state.utf8()
        both = old_subscribed | subscribed
        for ident, name in folders.items():
            old = old_folders.get(ident)
            if old is None:
                if wants("MailboxName", (name,), both):
                    lines.append(_list_line("", name, utf8=utf8))  # §5.4: a new mailbox
            elif old != name:
                renamed.update((old, name))
                if wants("MailboxName", (name, old), both):
                    # §5.4: a rename is told with RFC 5258's OLDNAME
                    lines.append(_list_line("", name, b' ("OLDNAME" ('
                                            + wire_mailbox(old, utf8) + b"))", utf8))
        for ident, name in old_folders.items():
            if ident not in folders and wants("MailboxName", (name,), both):
                lines.append(_list_line("\\NonExistent", name, utf8=utf8))  # §5.4: deleted
        for name in sorted(subscribed ^ old_subscribed):
            if name in renamed:
                continue  # the subscription moved with its folder
            if wants("SubscriptionChange", (name,), both):  # §5.5
                attrs = "\\Subscribed" if name in subscribed else ""
                lines.append(_list_line(attrs, name, utf8=utf8))
        for line in lines:
            self.state.add_line(line)
        self.state.folders_changed()

    def close(self) -> None:
        self.mailbox.unsubscribe_list_changes(self)


class NotifyState:
    """One session's NOTIFY SET: the watched folders and what is pending.

    `kick` is called when something is pending; the session decides whether
    it may write now.  `render(name, events)` makes the STATUS line of a
    mailbox (None when it is gone)."""

    def __init__(self, args: NotifyArgs, *, kick: Callable[[], None],
                 render: Callable[[str, frozenset[str]], bytes | None],
                 fetch_new: Callable[[list[int]], list[bytes]] | None = None,
                 rewatch: Callable[[], None] | None = None,
                 max_backlog: int | None = None,
                 utf8: Callable[[], bool] = lambda: False):
        groups = args.groups or ()
        self.selected_group: EventGroup | None = next(
            (g for g in groups if g.filter in SELECTED_FILTERS), None)
        self.other_groups = tuple(g for g in groups if g.filter not in SELECTED_FILTERS)
        self._kick = kick
        self._render = render
        self._fetch_new = fetch_new
        self._rewatch = rewatch
        self.utf8 = utf8  # IMAP4rev2 enabled: mailbox names in UTF-8 (RFC 9051 §6.3.1)
        self.list_watcher: ListWatcher | None = None
        self._new_uids: list[int] = []
        self.max_backlog = MAX_BACKLOG if max_backlog is None else max_backlog
        self.watchers: dict[str, FolderWatcher] = {}
        self.pending: dict[str, None] = {}  # mailbox names, in arrival order
        self.extra: list[bytes] = []  # ready lines (LIST for mailbox events)
        self.backlog = 0  # reports since the client last took notifications
        self.overflowed = False
        self.closed = False
        self.waiting_for_drain = False  # the client's buffer is full (commands/notify.py)

    # -- what the client asked for ------------------------------------------------------
    @property
    def selected_events(self) -> frozenset[str]:
        return frozenset(self.selected_group.events) if self.selected_group else frozenset()

    @property
    def selected_immediate(self) -> bool:
        """`selected`: expunges go out at once; `selected-delayed`: only with
        a command that may carry them (§6)."""
        return self.selected_group is not None and self.selected_group.filter == "selected"

    def wants_mailbox_event(self, event: str, names: Iterable[str], subscribed: set[str]) -> bool:
        """A group asked for event (§5.4, §5.5) on one of these names."""
        names = tuple(names)
        return any(event in g.events and any(group_names(g, n, subscribed) for n in names)
                   for g in self.other_groups)

    # -- the selected mailbox (§5.1) ----------------------------------------------------------
    def before_flush(self, session: Any) -> None:
        """Note which new messages the coming EXISTS announces."""
        group = self.selected_group
        if group is not None and group.fetch_atts and session.selected is not None:
            self._new_uids = session.selected.pending_new()

    def after_flush(self, session: Any) -> list[bytes]:
        """MessageNew's FETCH for the messages the EXISTS just announced."""
        uids, self._new_uids = self._new_uids, []
        if not uids or self._fetch_new is None:
            return []
        return self._fetch_new(uids)

    def hook(self, view: Any) -> None:
        """Push the selected folder's changes as they happen (§5.1-§5.3)."""
        if view is not None and view.on_change is None and self.selected_group is not None \
                and self.selected_group.events:
            view.on_change = self._kick

    def unhook(self, view: Any) -> None:
        if view is not None and view.on_change is self._kick:
            view.on_change = None

    # -- watching ---------------------------------------------------------------------------
    def watch(self, folders: Iterable[tuple[Any, frozenset[str]]]) -> None:
        """Watch these (folder, events) pairs and no others."""
        wanted = {folder.name: (folder, events) for folder, events in folders}
        for name in list(self.watchers):
            if name not in wanted or self.watchers[name].events != wanted[name][1]:
                self.watchers.pop(name).close()
        for name, (folder, events) in wanted.items():
            if name not in self.watchers and events & MESSAGE_EVENTS:
                self.watchers[name] = FolderWatcher(self, folder, events)

    def watch_list(self, mailbox: Any) -> None:
        """Follow the folder list when a filter's set of mailboxes can change
        or the client asked for MailboxName / SubscriptionChange."""
        if any(g.events for g in self.other_groups):
            self.list_watcher = ListWatcher(self, mailbox)

    def folders_changed(self) -> None:
        if self._rewatch is not None and not self.closed:
            self._rewatch()

    def _stop_watching(self) -> None:
        for watcher in self.watchers.values():
            watcher.close()
        self.watchers = {}
        if self.list_watcher is not None:
            self.list_watcher.close()
            self.list_watcher = None

    def close(self) -> None:
        self.closed = True
        self._stop_watching()
        self.pending = {}
        self.extra = []

    # -- queueing ---------------------------------------------------------------------------
    def changed(self, name: str) -> None:
        if self.closed:
            return
        self.pending[name] = None
        self.note_backlog()
        self._kick()

    def add_line(self, line: bytes) -> None:
        if self.closed:
            return
        self.extra.append(line)
        self.note_backlog()
        self._kick()

    def note_backlog(self) -> None:
        self.backlog += 1
        if self.backlog > self.max_backlog and not self.overflowed:
            # §5.8: stop, say so once, behave as NOTIFY NONE from now on.
            self.overflowed = True
            self._stop_watching()
            self.pending = {}
            self.extra = []

    def take(self, selected_name: str | None) -> list[bytes]:
        """The notification lines to send now (each ending CRLF)."""
        self.backlog = 0
        if self.overflowed:
            if self.closed:
                return []
            self.closed = True
            return [b"* OK [NOTIFICATIONOVERFLOW] notifications stopped, client too slow\r\n"]
        out = self.extra
        self.extra = []
        pending, self.pending = self.pending, {}
        for name in pending:
            # The selected mailbox is told by EXISTS / EXPUNGE / FETCH (§5).
            if name == selected_name:
                continue
            watcher = self.watchers.get(name)
            if watcher is None:
                continue
            line = self._render(name, watcher.events)
            if line is not None:
                out.append(b"* " + line + b"\r\n")
        return out
