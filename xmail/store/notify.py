# -*- test-case-name: tests.store.test_notify -*-
"""Change notification: who hears of new, expunged and re-flagged messages.

Every change to a folder raises its HIGHESTMODSEQ in the index (RFC 7162),
whoever makes it: this process, another worker, `xmailctl recycle restore`.
So one `get` of the folder state says whether anything happened; what
happened comes from two small logs in the index (the MODSEQ of each record
and the expunge log) read from the last MODSEQ a watch has seen.

- In this process every committed write calls `changed(fids)` on the
  reactor thread: listeners hear at once.
- Other worker processes (issue #9) hear through a Unix datagram socket
  each daemon process binds, with a marker in data_dir/run/notify/:
  `changed` sends the folder ids to every peer there, and a peer
  polls those folders as soon as the datagram arrives -- one `sendto` per
  peer and commit, no directory scans.  A datagram lost to a full peer
  buffer or a dead peer costs latency only: see the next point.
- A LoopingCall (every second, only folders that have listeners) is the
  fallback and catches what sends no datagram (`xmailctl`, another
  program): one read of the index's change counter, and a stat of each
  watched folder's new/ directory: a changed mtime means another program
  dropped mail in, which is then picked up (xmail.store.reindex.pickup_new).
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import task
from twisted.logger import Logger

from xmail.store.interfaces import FolderChanges, MessageRecord, StoreBusy

POLL_INTERVAL = 1.0  # the fallback; datagrams carry changes between workers
DROP_IN_EVERY = 1  # ticks between stats of new/ (once a second)
OPEN_CHECK_INTERVAL = 1.0  # seconds between drop-in checks when a folder is opened

# Datagram kinds: b"F" + folder ids (uint64 little endian); other kinds go
# to `ChangeNotifier.handlers` (the workers' queue kick, xmail.workers).
FOLDERS = b"F"
MAX_DATAGRAM = 4096  # well under the default socket buffer; more fids: more datagrams
_FID = struct.Struct("<Q")
FIDS_PER_DATAGRAM = (MAX_DATAGRAM - 1) // _FID.size
_channel_numbers = itertools.count(1)  # several stores in one process (tests)


@dataclass
class FolderWatch:
    fid: int
    modseq: int
    max_uid: int
    listeners: dict[Any, Any] = field(default_factory=dict)  # listener -> IFolder it subscribed through


class ChangeNotifier:
    _log = Logger()

    def __init__(self, store: Any, reactor: Any = None, interval: float = POLL_INTERVAL):
        self.store = store
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
        self.channel: NotifyChannel | None = None
        # datagram kind -> handler(payload); called on the reactor thread
        self.handlers: dict[bytes, Callable[[bytes], None]] = {FOLDERS: self._folders_datagram}

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        if self.reactor is None or self._loop is not None:
            return
        try:
            self.channel = NotifyChannel(self.store.settings.path("run", "notify"), self.reactor,
                                         self._datagram)
            self.channel.open()
        except OSError as e:
            # Still correct without it: the poller below catches other processes.
            self._log.warn("no change notification socket ({error}); polling only", error=e)
            self.channel = None
        self._loop = task.LoopingCall(self.tick)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=False).addErrback(
            lambda f: self._log.failure("change polling stopped", f))

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self.channel is not None:
            self.channel.close()
            self.channel = None

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

    # -- change detection -----------------------------------------------------------------------------------
    def changed(self, fids: Any) -> None:
        """Called after this process committed a change to fids: tell this
        process's listeners, then the other workers."""
        fids = list(fids)
        self.poll([fid for fid in fids if fid in self._watches])
        if self.channel is not None and fids:
            for start in range(0, len(fids), FIDS_PER_DATAGRAM):
                chunk = fids[start:start + FIDS_PER_DATAGRAM]
                self.channel.broadcast(FOLDERS + b"".join(_FID.pack(fid) for fid in chunk))

    def broadcast(self, kind: bytes, payload: bytes = b"") -> None:
        """Send a datagram of another kind to the other workers (best effort)."""
        if self.channel is not None:
            self.channel.broadcast(kind + payload)

    def _datagram(self, data: bytes) -> None:
        handler = self.handlers.get(data[:1])
        if handler is None:
            return
        try:
            handler(data[1:])
        except Exception:
            self._log.failure("change datagram handler failed")

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


class NotifyChannel:
    """This process's datagram socket, and the sends to its peers.

    Sockets live in Linux's abstract namespace (no path length limit, gone
    with their process); each has a marker file in the notify directory,
    `<pid>.<n>`, and its address is derived from the data directory and the
    marker's name.  Peers are the other markers, listed again only when the
    directory's mtime moved (a worker came or went).  A peer whose address
    refuses (its process died) has its marker removed.  Reading is a reactor
    reader (IReadDescriptor), never a thread.
    """

    _log = Logger()

    def __init__(self, directory: str, reactor: Any, received: Callable[[bytes], None]):
        self.directory = directory
        self.reactor = reactor
        self.received = received
        self.name = f"{os.getpid()}.{next(_channel_numbers)}"
        self.marker = os.path.join(directory, self.name)
        digest = hashlib.blake2b(os.path.realpath(directory).encode(), digest_size=12).hexdigest()
        self._prefix = b"\0xmail-notify/" + digest.encode() + b"/"
        self.socket: socket.socket | None = None
        self._peers: list[tuple[str, bytes]] = []
        self._listed_mtime = -1
        self.sent = 0  # datagrams sent (stats, tests)
        self.dropped = 0  # datagrams a full peer buffer refused

    def address(self, name: str) -> bytes:
        return self._prefix + name.encode()

    def open(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self.address(self.name))
            sock.setblocking(False)
            fd = os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.close(fd)
        except BaseException:
            sock.close()
            raise
        self.socket = sock
        self.reactor.addReader(self)

    def close(self) -> None:
        if self.socket is None:
            return
        self.reactor.removeReader(self)
        self.socket.close()
        self.socket = None
        try:
            os.unlink(self.marker)
        except OSError:
            pass

    # -- IReadDescriptor ------------------------------------------------------------------------------
    def fileno(self) -> int:
        return self.socket.fileno() if self.socket is not None else -1

    def logPrefix(self) -> str:
        return "notify"

    def connectionLost(self, reason: Any) -> None:
        self.socket = None

    def doRead(self) -> None:
        for _ in range(256):  # bounded: other readers get their turn
            if self.socket is None:
                return
            try:
                data = self.socket.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._log.warn("change notification socket: {error}", error=e)
                return
            if data:
                self.received(data)

    # -- sending --------------------------------------------------------------------------------------------
    def peers(self) -> list[tuple[str, bytes]]:
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except OSError:
            return []
        if mtime != self._listed_mtime:
            self._listed_mtime = mtime
            try:
                names = os.listdir(self.directory)
            except OSError:
                names = []
            self._peers = [(name, self.address(name)) for name in names if name != self.name]
        return self._peers

    def broadcast(self, data: bytes) -> None:
        if self.socket is None:
            return
        for name, address in self.peers():
            try:
                self.socket.sendto(data, address)
                self.sent += 1
            except (BlockingIOError, InterruptedError):
                self.dropped += 1  # the peer is busy; its poller catches up
            except OSError as e:
                if e.errno == errno.ECONNREFUSED:
                    # Its process is gone: forget its marker.
                    try:
                        os.unlink(os.path.join(self.directory, name))
                    except OSError:
                        pass
                    self._listed_mtime = -1
                else:
                    self._log.warn("cannot notify {peer}: {error}", peer=name, error=e)
