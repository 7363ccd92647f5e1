# -*- test-case-name: tests.store.test_notify -*-
"""Change notification: who hears of new, expunged and re-flagged messages.

Every change to a folder raises its HIGHESTMODSEQ in the index (RFC 7162),
whoever makes it: this process, another worker, `xmailctl recycle restore`.
So one `get` of the folder state says whether anything happened; what
happened comes from two small logs in the index (the MODSEQ of each record
and the expunge log) read from the last MODSEQ a watch has seen.

- In this process every committed write calls `changed(fids)` on the
  reactor thread: listeners hear at once.
- Other worker processes (issue #9) hear through the bus the workers
  inject at construction (xmail.workers.bus.NotifyBus; the store never
  imports the workers, issue 14): `changed` sends the folder ids to every
  peer, and a peer polls those folders as soon as the datagram arrives.
  A datagram lost to a full peer buffer or a dead peer costs latency
  only: see the next point.  One process on its own has no bus.
- A user's folder list (CREATE, DELETE, RENAME, SUBSCRIBE) has no MODSEQ:
  `lists_after` tells this process's IFolderListListeners and broadcasts
  an `L`+address datagram on the bus to the other workers (IMAP NOTIFY
  MailboxName and SubscriptionChange, RFC 5465 §5.4-§5.5).
- A LoopingCall (every second, only folders that have listeners) is the
  fallback and catches what sends no datagram (`xmailctl`, another
  program): one read of the index's change counter, and a stat of each
  watched folder's new/ directory: a changed mtime means another program
  dropped mail in, which is then picked up (xmail.store.reindex.pickup_new).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import task
from twisted.logger import Logger

from xmail.store.interfaces import FolderChanges, MessageRecord, StoreBusy

POLL_INTERVAL = 1.0  # the fallback; datagrams carry changes between workers
DROP_IN_EVERY = 1  # ticks between stats of new/ (once a second)
OPEN_CHECK_INTERVAL = 1.0  # seconds between drop-in checks when a folder is opened

# The bus datagram kind of this module: b"F" + folder ids (uint64 little
# endian); 511 of them keep a datagram under the bus's 4096 bytes (more
# fids: more datagrams).
FOLDERS = b"F"
LISTS = b"L"  # + a user's address: its folder list or subscriptions changed
MAX_ADDRESS_PAYLOAD = 4000  # an address longer than this is not broadcast (the bus takes 4096)
_FID = struct.Struct("<Q")
FIDS_PER_DATAGRAM = 511


@dataclass
class FolderWatch:
    fid: int
    modseq: int
    max_uid: int
    listeners: dict[Any, Any] = field(default_factory=dict)  # listener -> IFolder it subscribed through


class ChangeNotifier:
    _log = Logger()

    def __init__(self, store: Any, reactor: Any = None, interval: float = POLL_INTERVAL, *, bus: Any = None):
        """bus: the workers' notification bus (register(kind, handler),
        broadcast(kind, payload)); None: one process, the poller only."""
        self.store = store
        self.bus = bus
        self.reactor = reactor
        self.interval = interval
        self._watches: dict[int, FolderWatch] = {}
        self._new_mtimes: dict[int, int] = {}
        self._opened_at: dict[int, float] = {}  # fid -> when opened() last looked at new/
        self._picking: set[int] = set()
        self._busy_said = False  # one warning per spell of a full store queue
        self._loop: task.LoopingCall | None = None
        self._ticks = 0
        self._last_counter = -1
        # address -> {IFolderListListener: the IMailbox it subscribed through}
        self._list_listeners: dict[str, dict[Any, Any]] = {}
        if bus is not None:
            bus.register(FOLDERS, self._folders_datagram)
            bus.register(LISTS, self._lists_datagram)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self.reactor is None or self._loop is not None:
            return
        self._loop = task.LoopingCall(self.tick)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=False).addErrback(
            lambda f: self._log.failure("change polling stopped", f))

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None

    def tick(self) -> None:
        """Cross-process detection: one counter read when nothing changed."""
        if not self._watches:
            return
        self._ticks += 1
        if self._ticks % DROP_IN_EVERY == 0:
            for fid in list(self._watches):
                try:
                    self.check_drop_ins(fid)
                except Exception:
                    self._log.failure("checking new/ of folder {fid} failed", fid=fid)
        with self.store.env.read() as txn:
            counter = self.store.index.change_counter(txn)
        if counter != self._last_counter:
            self._last_counter = counter
            self.poll()

    # -- listeners -------------------------------------------------------------------------------------
    def subscribe(self, folder: Any, listener: Any) -> None:
        watch = self._watches.get(folder.fid)
        if watch is None:
            with self.store.env.read() as txn:
                state = self.store.index.state(txn, folder.fid)
            if state is None:
                return
            watch = self._watches[folder.fid] = FolderWatch(folder.fid, state.modseq, state.uidnext - 1)
            self._remember_new_mtime(folder.fid)
        watch.listeners[listener] = folder

    def unsubscribe(self, folder: Any, listener: Any) -> None:
        watch = self._watches.get(folder.fid)
        if watch is None:
            return
        watch.listeners.pop(listener, None)
        if not watch.listeners:
            del self._watches[folder.fid]

    def watching(self, fid: int) -> bool:
        return fid in self._watches

    # -- folder lists (IMAP NOTIFY MailboxName, SubscriptionChange) ------------------------
    def subscribe_lists(self, mailbox: Any, listener: Any) -> None:
        self._list_listeners.setdefault(mailbox.address, {})[listener] = mailbox

    def unsubscribe_lists(self, mailbox: Any, listener: Any) -> None:
        listeners = self._list_listeners.get(mailbox.address)
        if listeners is not None:
            listeners.pop(listener, None)
            if not listeners:
                del self._list_listeners[mailbox.address]

    def lists_after(self, result: Any, address: str) -> Any:
        """After a committed change to address's folder list or
        subscriptions: tell this process's listeners, then the other
        workers (one datagram).  Passes result on."""
        try:
            self._tell_lists(address)
            if self.bus is not None:
                payload = address.encode("utf-8")
                if len(payload) <= MAX_ADDRESS_PAYLOAD:
                    self.bus.broadcast(LISTS, payload)
        except Exception:
            self._log.failure("folder list notification failed")
        return result

    def _lists_datagram(self, payload: bytes) -> None:
        self._tell_lists(payload.decode("utf-8", "replace"))

    def _tell_lists(self, address: str) -> None:
        for listener, mailbox in list(self._list_listeners.get(address, {}).items()):
            try:
                listener.folder_list_changed(mailbox)
            except Exception:
                self._log.failure("folder list listener {listener!r} failed", listener=listener)

    # -- change detection -----------------------------------------------------------------------------------
    def changed(self, fids: Any) -> None:
        """Called after this process committed a change to fids: tell this
        process's listeners, then the other workers."""
        fids = list(fids)
        self.poll([fid for fid in fids if fid in self._watches])
        if self.bus is not None and fids:
            for start in range(0, len(fids), FIDS_PER_DATAGRAM):
                chunk = fids[start:start + FIDS_PER_DATAGRAM]
                self.bus.broadcast(FOLDERS, b"".join(_FID.pack(fid) for fid in chunk))

    def _folders_datagram(self, payload: bytes) -> None:
        usable = len(payload) - len(payload) % _FID.size
        fids = [fid for (fid,) in _FID.iter_unpack(payload[:usable])]
        self.poll([fid for fid in fids if fid in self._watches])

    def poll(self, fids: Any = None) -> None:
        fids = list(self._watches) if fids is None else [f for f in fids if f in self._watches]
        if not fids:
            return
        index = self.store.index
        reports: list[tuple[FolderWatch, FolderChanges]] = []
        with self.store.env.read() as txn:
            for fid in fids:
                watch = self._watches[fid]
                state = index.state(txn, fid)
                if state is None or state.modseq <= watch.modseq:
                    continue
                changed, expunged = index.changes_since(txn, fid, watch.modseq)
                new = sorted(u for u in changed if u > watch.max_uid)
                flagged = [u for u in changed if u <= watch.max_uid]
                records = tuple(MessageRecord(*t) for t in index.get_many(txn, fid, flagged))
                gone = tuple(sorted(u for u in expunged if u <= watch.max_uid))
                watch.modseq = state.modseq
                watch.max_uid = max(watch.max_uid, state.uidnext - 1)
                if new or gone or records:
                    reports.append((watch, FolderChanges(tuple(new), gone, records)))
        for watch, changes in reports:
            for listener, folder in list(watch.listeners.items()):
                try:
                    listener.folder_changed(folder, changes)
                except Exception:
                    self._log.failure("folder listener {listener!r} failed", listener=listener)

    # -- mail dropped into new/ by other programs ------------------------------------------------------------
    def _new_dir(self, fid: int) -> str | None:
        with self.store.env.read() as txn:
            state = self.store.index.state(txn, fid)
        return os.path.join(self.store.folder_dir(state), "new") if state is not None else None

    def _remember_new_mtime(self, fid: int) -> None:
        path = self._new_dir(fid)
        if path is None:
            return
        try:
            self._new_mtimes[fid] = os.stat(path).st_mtime_ns
        except OSError:
            self._new_mtimes[fid] = -1

    def check_drop_ins(self, fid: int, *, force: bool = False) -> None:
        """One stat of new/; a pickup when its mtime moved (or when forced,
        e.g. the first time a folder is opened in this process)."""
        path = self._new_dir(fid)
        if path is None:
            return
        try:
            mtime = os.stat(path).st_mtime_ns
        except OSError:
            return
        if not force and self._new_mtimes.get(fid) == mtime:
            return
        self._new_mtimes[fid] = mtime
        if fid in self._picking:
            # A pickup is running; look again at the next tick.
            self._new_mtimes[fid] = -1
            return
        self._picking.add(fid)
        from xmail.store.reindex import pickup_new

        d = pickup_new(self.store, fid)
        d.addCallbacks(self._picked, self._pickup_failed, errbackArgs=(fid,))
        d.addBoth(lambda _: self._picking.discard(fid))

    def _picked(self, _count: int) -> None:
        self._busy_said = False

    def _pickup_failed(self, failure: Any, fid: int) -> None:
        if not failure.check(StoreBusy):
            self._log.failure("picking up new/ of folder {fid} failed", failure, fid=fid)
            return
        # The store's file queue is full (xmail.store.runner): load, not a
        # fault.  LIST-STATUS over thousands of folders opens each for the
        # first time in this process and used to log a traceback per folder
        # (issue 16, item 7).  Forget the mtime so the next open or tick
        # looks again, and say so once until a pickup gets through.
        self._new_mtimes.pop(fid, None)
        if not self._busy_said:
            self._busy_said = True
            self._log.warn("store busy ({error}): drop-in pickups postponed", error=failure.value)

    def opened(self, fid: int) -> None:
        """A folder was opened: pick up drop-ins once per mtime change.

        At most once a second per folder: every SMTP delivery opens INBOX,
        and a stat of new/ per message is measurable at hundreds a second.
        """
        now = self.store.runner.seconds()
        if fid not in self._new_mtimes:
            self._opened_at[fid] = now
            self.check_drop_ins(fid, force=True)
        elif now - self._opened_at.get(fid, 0.0) >= OPEN_CHECK_INTERVAL:
            self._opened_at[fid] = now
            self.check_drop_ins(fid)
