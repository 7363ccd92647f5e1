# -*- test-case-name: tests.store.test_memory -*-
"""An in-memory mail store: `MemoryFolder` (IFolder) and `MemoryMailbox`
(IMailbox), for protocol unit tests and anyone who needs a store without a
disk (Twisted ships in-memory implementations of its interfaces the same
way).  Conformance is checked with `zope.interface.verify.verifyObject` in
tests/store/test_memory.py.

What it does not do: durability (there is no disk), quotas (unlimited),
Recycle (expunge removes for good, with a tombstone for VANISHED), and
cross-process change notification: changes are queued and reported to the
listeners when `poll_changes()` is called, so a test decides when a session
hears of them.  Methods documented as "-> Deferred" return Deferreds that
have already fired.
"""

from __future__ import annotations

import io
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer
from zope.interface import implementer

from xmail.message import parse_message
from xmail.store.interfaces import (
    AppendResult,
    CopyResult,
    FolderChanges,
    FolderExists,
    FolderInfo,
    FolderNotAllowed,
    FolderStatus,
    IFolder,
    IFolderListener,
    IFolderListListener,
    IMailbox,
    MessageMeta,
    MessageRecord,
    NoSuchFolder,
    NoSuchMessage,
    QuotaUsage,
    RecycledMessage,
)


def _crlf(data: bytes) -> bytes:
    """Bare LF stored as CRLF (the store invariant, IFolder.append)."""
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


@dataclass
class _Message:
    data: bytes
    flags: frozenset[str]
    modseq: int
    internaldate: float
    meta: MessageMeta | None = None
    filename: str = ""


@dataclass
class _Pending:
    new: list[int] = field(default_factory=list)
    expunged: list[int] = field(default_factory=list)
    flags: dict[int, MessageRecord] = field(default_factory=dict)


@implementer(IFolder)
class MemoryFolder:
    """One folder held in a dict, UID order kept by the keys' order."""

    def __init__(self, name: str = "INBOX", special_use: str | None = None, *, uidvalidity: int = 1,
                 mailbox: MemoryMailbox | None = None):
        self.name = name
        self.special_use = special_use
        self.uidvalidity = uidvalidity
        self.mailbox = mailbox
        self._messages: dict[int, _Message] = {}
        self._uidnext = 1
        self._modseq = 1
        self._tombstones: dict[int, int] = {}  # uid -> modseq of its expunge
        self._listeners: list[IFolderListener] = []
        self._pending = _Pending()
        self.body_texts: dict[int, tuple[str, bool]] = {}  # what note_body_text was told

    # -- building a fixture without Deferreds -------------------------------------------------
    def add(self, data: bytes, flags: Iterable[str] = (), internaldate: float | None = None) -> int:
        """Store a message now; returns its UID."""
        uid = self._uidnext
        self._uidnext += 1
        self._modseq += 1
        self._messages[uid] = _Message(_crlf(data), frozenset(flags), self._modseq,
                                       time.time() if internaldate is None else internaldate,
                                       filename=f"{self.uidvalidity}.{uid}.memory")
        self._pending.new.append(uid)
        return uid

    # -- reads --------------------------------------------------------------------------------
    def _get(self, uid: int) -> _Message:
        try:
            return self._messages[uid]
        except KeyError:
            raise NoSuchMessage(str(uid)) from None

    def _record(self, uid: int, message: _Message) -> MessageRecord:
        return MessageRecord(uid, message.flags, message.modseq, len(message.data), message.internaldate,
                             message.filename)

    def status(self) -> FolderStatus:
        unseen = sum(1 for m in self._messages.values() if "\\Seen" not in m.flags)
        return FolderStatus(len(self._messages), unseen, self._uidnext, self.uidvalidity, self._modseq,
                            sum(len(m.data) for m in self._messages.values()))

    def records(self, uids: Any = None) -> list[MessageRecord]:
        if uids is None:
            wanted = sorted(self._messages)
        else:
            wanted = sorted(uid for uid in set(uids) if uid in self._messages)
        return [self._record(uid, self._messages[uid]) for uid in wanted]

    def record(self, uid: int) -> MessageRecord:
        return self._record(uid, self._get(uid))

    def message_path(self, uid: int) -> str:
        """There is no file: a name that says so (callers read with open_message)."""
        return f"memory:{self.name}/{self._get(uid).filename}"

    def open_message(self, uid: int) -> Any:
        return io.BytesIO(self._get(uid).data)

    def meta(self, uid: int) -> MessageMeta:
        message = self._get(uid)
        if message.meta is None:
            message.meta = parse_message(message.data)
        return message.meta

    def body_search(self, needle: str, uids: Any) -> tuple[set[int], set[int]]:
        """No body index: every existing message is undecided, the caller
        reads the files (what the disk store does before indexing)."""
        return set(), {uid for uid in uids if uid in self._messages}

    def note_body_text(self, uid: int, text: str, cut: bool) -> None:
        self.body_texts[uid] = (text, cut)

    def changed_since(self, modseq: int) -> list[MessageRecord]:
        return [self._record(uid, m) for uid, m in sorted(self._messages.items()) if m.modseq > modseq]

    def expunged_since(self, modseq: int) -> list[int]:
        return sorted(uid for uid, when in self._tombstones.items() if when > modseq)

    def expunge_log_floor(self) -> int:
        return 0  # tombstones are never compacted here

    def headers(self, uid: int) -> dict[str, str]:
        return self.meta(uid).headers

    def headers_many(self, uids: Any) -> list[tuple[int, dict[str, str]]]:
        return [(uid, self.meta(uid).headers) for uid in sorted(set(uids)) if uid in self._messages]

    # -- writes ---------------------------------------------------------------------------------
    def append(self, source: bytes | str, flags: Any = (), internaldate: float | None = None) -> Any:
        if isinstance(source, str):  # the path of a spooled body, copied in
            with open(source, "rb") as f:
                source = f.read()
        return defer.succeed(AppendResult(self.uidvalidity, self.add(source, flags, internaldate)))

    def discard(self, uids: Any) -> Any:
        gone = [uid for uid in sorted(set(uids)) if self._messages.pop(uid, None) is not None]
        return defer.succeed(gone)

    def set_flags(self, uids: Any, flags: Any, mode: str, unchanged_since: int | None = None) -> Any:
        flags = frozenset(flags)
        changed: list[MessageRecord] = []
        refused: list[int] = []
        for uid in sorted(set(uids)):
            message = self._messages.get(uid)
            if message is None:
                continue
            if unchanged_since is not None and message.modseq > unchanged_since:  # RFC 7162 §3.1.3
                refused.append(uid)
                continue
            if mode == "set":
                new = flags
            elif mode == "add":
                new = message.flags | flags
            elif mode == "remove":
                new = message.flags - flags
            else:
                raise ValueError(f"mode {mode!r}")
            if new != message.flags:
                self._modseq += 1
                message.flags, message.modseq = new, self._modseq
                record = self._record(uid, message)
                self._pending.flags[uid] = record
                changed.append(record)
        return defer.succeed((changed, refused))

    def _destination(self, dest: str) -> MemoryFolder:
        if self.mailbox is None:
            raise NoSuchFolder(dest)
        return self.mailbox.folder(dest)

    def copy(self, uids: Any, dest: str) -> Any:
        try:
            target = self._destination(dest)
        except NoSuchFolder as e:
            return defer.fail(e)
        source_uids, dest_uids = [], []
        for uid in sorted(set(uids)):
            message = self._messages.get(uid)
            if message is not None:
                source_uids.append(uid)
                dest_uids.append(target.add(message.data, message.flags, message.internaldate))
        return defer.succeed(CopyResult(target.uidvalidity, tuple(source_uids), tuple(dest_uids)))

    def move(self, uids: Any, dest: str) -> Any:
        d = self.copy(uids, dest)

        def expunge_sources(result: CopyResult) -> CopyResult:
            self._expunge(result.source_uids)
            return result

        return d.addCallback(expunge_sources)

    def _expunge(self, uids: Iterable[int]) -> list[int]:
        gone = []
        for uid in sorted(set(uids)):
            if self._messages.pop(uid, None) is not None:
                self._modseq += 1
                self._tombstones[uid] = self._modseq
                self._pending.expunged.append(uid)
                self._pending.flags.pop(uid, None)
                gone.append(uid)
        return gone

    def expunge(self, uids: Any) -> Any:
        return defer.succeed(self._expunge(uids))

    # -- changes --------------------------------------------------------------------------------
    def subscribe_changes(self, listener: IFolderListener) -> None:
        if listener not in self._listeners:
            self._listeners.append(listener)

    def unsubscribe_changes(self, listener: IFolderListener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def poll_changes(self) -> None:
        """Report what changed since the last poll to every listener."""
        pending, self._pending = self._pending, _Pending()
        new = tuple(uid for uid in pending.new if uid in self._messages)
        changes = FolderChanges(new, tuple(pending.expunged), tuple(pending.flags.values()))
        if changes == FolderChanges():
            return
        for listener in list(self._listeners):
            listener.folder_changed(self, changes)


@implementer(IMailbox)
class MemoryMailbox:
    """All folders of one user, in memory: INBOX and the special folders."""

    def __init__(self, address: str = "alice@example.com",
                 special: dict[str, str] | None = None):
        self.address = address.lower()
        self._folders: dict[str, MemoryFolder] = {}
        self._subscribed: set[str] = set()
        self._uidvalidity = 0
        self.sent_ids: dict[str, int] = {}  # Message-ID -> UID in Sent (send-save)
        self._list_listeners: list[IFolderListListener] = []
        self._add("INBOX", None)
        for name, use in (special or {"Drafts": "\\Drafts", "Sent": "\\Sent", "Junk": "\\Junk",
                                      "Trash": "\\Trash"}).items():
            self._add(name, use)

    def _key(self, name: str) -> str:
        return "INBOX" if name.upper() == "INBOX" else name  # RFC 3501 §5.1: INBOX case-insensitive

    def _add(self, name: str, special_use: str | None) -> MemoryFolder:
        self._uidvalidity += 1
        folder = MemoryFolder(self._key(name), special_use, uidvalidity=self._uidvalidity, mailbox=self)
        self._folders[folder.name] = folder
        self._subscribed.add(folder.name)
        return folder

    def adopt(self, folder: MemoryFolder) -> MemoryFolder:
        """Put a folder built elsewhere (a test's subclass) in this mailbox,
        replacing one of the same name."""
        folder.name = self._key(folder.name)
        folder.mailbox = self
        self._folders[folder.name] = folder
        self._subscribed.add(folder.name)
        return folder

    def list_folders(self) -> list[FolderInfo]:
        names = ["INBOX"] + sorted(n for n in self._folders if n != "INBOX")
        # A folder's UIDVALIDITY stays with it across RENAME: its identity.
        folders = [self._folders[n] for n in names]
        return [FolderInfo(f.name, f.special_use, f.name in self._subscribed, f.uidvalidity) for f in folders]

    def subscriptions(self) -> list[str]:
        return sorted(self._subscribed)

    def folder(self, name: str) -> MemoryFolder:
        try:
            return self._folders[self._key(name)]
        except KeyError:
            raise NoSuchFolder(name) from None

    def folder_by_special_use(self, use: str) -> MemoryFolder:
        for folder in self._folders.values():
            if folder.special_use == use:
                return folder
        raise NoSuchFolder(use)

    def create_folder(self, name: str, special_use: str | None = None) -> Any:
        name = self._key(name)
        if name in self._folders:
            return defer.fail(FolderExists(name))
        parts = name.split("/")
        for depth in range(1, len(parts)):  # RFC 3501 §6.3.3: missing parents too
            parent = "/".join(parts[:depth])
            if parent not in self._folders:
                self._add(parent, None)
        self._add(name, special_use)
        return self._lists_changed()

    def delete_folder(self, name: str) -> Any:
        name = self._key(name)
        if name == "INBOX":
            return defer.fail(FolderNotAllowed(name))
        if name not in self._folders:
            return defer.fail(NoSuchFolder(name))
        del self._folders[name]
        return self._lists_changed()

    def rename_folder(self, old: str, new: str) -> Any:
        old, new = self._key(old), self._key(new)
        if old not in self._folders:
            return defer.fail(NoSuchFolder(old))
        if new in self._folders:
            return defer.fail(FolderExists(new))
        if old == "INBOX":  # RFC 3501 §6.3.5: INBOX's messages move, INBOX stays
            inbox = self._folders["INBOX"]
            target = self._add(new, None)
            for record in inbox.records():
                message = inbox._messages[record.uid]
                target.add(message.data, message.flags, message.internaldate)
            inbox._expunge([r.uid for r in inbox.records()])
            return self._lists_changed()
        for name in sorted(n for n in self._folders if n == old or n.startswith(old + "/")):
            folder = self._folders.pop(name)
            folder.name = new + name[len(old):]
            self._folders[folder.name] = folder
        return self._lists_changed()

    def set_subscribed(self, name: str, subscribed: bool) -> Any:
        (self._subscribed.add if subscribed else self._subscribed.discard)(self._key(name))
        return self._lists_changed()

    def subscribe_list_changes(self, listener: IFolderListListener) -> None:
        self._list_listeners.append(listener)

    def unsubscribe_list_changes(self, listener: IFolderListListener) -> None:
        if listener in self._list_listeners:
            self._list_listeners.remove(listener)

    def _lists_changed(self) -> Any:
        for listener in list(self._list_listeners):
            listener.folder_list_changed(self)
        return defer.succeed(None)

    def quota(self) -> QuotaUsage:
        statuses = [f.status() for f in self._folders.values()]
        return QuotaUsage(sum(s.size for s in statuses), sum(s.messages for s in statuses), 0, 0)

    def save_sent(self, source: bytes | str, message_id: str | None) -> Any:
        sent = self.folder_by_special_use("\\Sent")
        d = sent.append(source, ("\\Seen",))

        def remember(result: AppendResult) -> AppendResult:
            if message_id:
                self.sent_ids[message_id] = result.uid
            return result

        return d.addCallback(remember)

    def recycle_list(self) -> list[RecycledMessage]:
        return []  # expunge removes for good here

    def recycle_restore(self, uids: Any) -> Any:
        return defer.succeed([])
