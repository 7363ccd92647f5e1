# -*- test-case-name: tests.store.test_delivery, tests.store.test_service_store -*-
"""MailStore: every user's mail, one per process (IMessageStore).

    MailStore(env, settings, directory, reactor)   the daemon
    MailStore(env, settings, directory)            xmailctl and tests: synchronous

With a reactor, file work runs on a bounded thread pool and index writes on
the environment's group-commit writer (xmail.store.runner); without one,
everything runs in the calling thread and every Deferred returned has
already fired.  Both modes share the data directory safely: LMDB serialises
writers across processes and every UID is allocated inside a write
transaction.

The pieces: names (folder names -> directories), maildir (files), index
(the LMDB schema), delivery (append), transfer (copy, move, expunge),
folder / mailbox (the interfaces), recycle, quota, notify (change
notification), reindex (rebuild, drop-in pickup).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from xmail.config import Settings
from xmail.store import maildir, names, upgrade
from xmail.store.fulltext import FILENAME as FULLTEXT_FILE
from xmail.store.fulltext import FullTextIndex
from xmail.store.index import FolderState, UidIndex
from xmail.store.interfaces import AppendResult, IMessageStore, NoSuchFolder
from xmail.store.mailbox import Mailbox
from xmail.store.notify import ChangeNotifier
from xmail.store.runner import SyncRunner, ThreadedRunner


@implementer(IMessageStore)
class MailStore:
    _log = Logger()

    def __init__(self, env: Any, settings: Settings, directory: Any, reactor: Any = None, *,
                 clock: Callable[[], float] | None = None, check_format: bool = True, bus: Any = None):
        """clock: seconds since the epoch (default reactor.seconds() or
        time.time()); tests inject one to move Recycle expiry along.
        bus: the workers' notification bus (xmail.workers.bus.NotifyBus,
        injected: the store does not import the workers); None: one process.
        check_format: bring the index to this version's format first
        (xmail.store.upgrade; blocking, before anything is served)."""
        self.env = env
        self.settings = settings
        self.directory = directory
        self.reactor = reactor
        self.mail_dir = settings.path("mail")
        self.fulltext = FullTextIndex(os.path.join(env.path, FULLTEXT_FILE), threaded=reactor is not None)
        self.index = UidIndex(env, self.fulltext)
        self.runner: Any = (ThreadedRunner(env, reactor, clock) if reactor is not None
                            else SyncRunner(env, clock))
        self.syncer = maildir.DirSyncer()
        self.notifier = ChangeNotifier(self, reactor, bus=bus)
        self._mailboxes: dict[str, Mailbox] = {}
        self._provisioned: set[str] = set()
        self._roots: dict[str, str] = {}  # address -> its Maildir++ root (names.user_root)
        # Old names of re-flagged files waiting for retire_names' sync, by
        # folder; one retirement (sync + write) runs at a time.
        self._stale_names: dict[int, list[tuple[int, str]]] = {}
        self._retiring = False
        self._retired_waiters: list[defer.Deferred[None]] = []
        # Told of every COPY/MOVE between folders once it is committed:
        # observer(address, source folder, dest folder, dest fid, dest uids).
        # The spam filter learns from moves into and out of Junk (issue 17)
        # without the store knowing of it.
        self.transfer_observers: list[Callable[[str, str, str, int, tuple[int, ...]], None]] = []
        if check_format:
            def synchronous() -> MailStore:
                return MailStore(env, settings, directory, clock=clock, check_format=False)

            upgrade.ensure_format(self, synchronous if reactor is not None else None)

    # -- lifecycle ---------------------------------------------------------------------------------
    def start(self) -> None:
        self.runner.start()
        self.fulltext.start()
        self.notifier.start()

    def stop(self) -> Any:
        self.notifier.stop()
        self.runner.stop()
        self.fulltext.close()  # after the runner: its last commits queue full-text work
        return None

    # -- users -------------------------------------------------------------------------------------
    def mailbox(self, address: str) -> Mailbox:
        address = names.canonical_address(address)
        mailbox = self._mailboxes.get(address)
        if mailbox is not None:
            return mailbox
        with self.env.read() as txn:
            if self.index.usage(txn, address) is None:
                raise NoSuchFolder(f"no mailbox for {address}")
        mailbox = self._mailboxes[address] = Mailbox(self, address)
        return mailbox

    def provision(self, address: str) -> defer.Deferred[Mailbox]:
        try:
            address = names.canonical_address(address)
            root = names.user_root(self.mail_dir, address)
        except Exception:
            return defer.fail()
        if address in self._provisioned:
            # Default folders cannot be deleted: once complete, always complete.
            return defer.succeed(self.mailbox(address))
        index = self.index
        with self.env.read() as txn:
            complete = index.usage(txn, address) is not None and all(
                index.folder_id(txn, address, name) is not None for name, _use in names.DEFAULT_FOLDERS)
        if complete:
            self._provisioned.add(address)
            return defer.succeed(self.mailbox(address))

        def make_dirs() -> None:
            maildir.make_folder_dirs(root, subfolder=False)
            for name, _use in names.DEFAULT_FOLDERS[1:]:
                maildir.make_folder_dirs(os.path.join(root, names.folder_dirname(name)), subfolder=True)
            # Durable before the index says the user exists.
            for path in (root, os.path.dirname(root), os.path.dirname(os.path.dirname(root))):
                maildir.fsync_dir(path)

        def job(txn: Any) -> None:
            now = self.runner.seconds()
            if index.usage(txn, address) is None:
                index.set_usage(txn, address, 0, 0)
            for name, use in names.DEFAULT_FOLDERS:
                if index.folder_id(txn, address, name) is None:
                    index.create_folder(txn, address, name, names.folder_dirname(name), use, now)
                    index.set_subscribed(txn, address, name, True)

        d = self.runner.io(make_dirs)
        d.addCallback(lambda _: self.runner.write(job))
        d.addCallback(lambda _: self.mailbox(address))
        return d

    # -- delivery ----------------------------------------------------------------------------------
    def deliver(self, address: str, source: bytes | str, folder: str = "INBOX", flags: Any = (),
                internaldate: float | None = None) -> defer.Deferred[AppendResult]:
        d = self.provision(address)
        d.addCallback(lambda mailbox: mailbox.folder(folder).append(source, flags, internaldate))
        return d

    # -- Recycle and maintenance -------------------------------------------------------------------
    def purge_expired(self, now: float | None = None) -> defer.Deferred[int]:
        from xmail.store.recycle import purge_expired

        return purge_expired(self, self.runner.seconds() if now is None else now)

    def reindex(self, address: str | None = None) -> defer.Deferred[dict[str, int]]:
        """Rebuild the index from the Maildir (all users, or one); fires with
        counts {"kept", "new", "removed", "skipped"}."""
        from xmail.store.reindex import reindex

        return reindex(self, address)

    def transferred(self, address: str, source: str, dest: str, dest_fid: int,
                    dest_uids: tuple[int, ...]) -> None:
        for observer in self.transfer_observers:
            try:
                observer(address, source, dest, dest_fid, dest_uids)
            except Exception:
                self._log.failure("transfer observer failed")

    # -- helpers shared by the modules of this package ---------------------------------------------
    def user_root(self, address: str) -> str:
        root = self._roots.get(address)
        if root is None:
            root = self._roots[address] = names.user_root(self.mail_dir, address)
        return root

    def folder_dir(self, state: FolderState) -> str:
        return os.path.join(self.user_root(state.address), state.dirname)

    def current_path(self, fid: int, uid: int) -> str | None:
        """Where the message file is now (flags included), from the index."""
        with self.env.read() as txn:
            state = self.index.state(txn, fid)
            record = self.index.record(txn, fid, uid) if state is not None else None
        if record is None:
            return None
        return maildir.message_file(self.folder_dir(state), record.filename, record.flags, state.keywords)

    def current_file(self, fid: int, uid: int) -> tuple[str, int] | None:
        """(path, recorded size) of a message: current_path plus the
        RFC822.SIZE no read may go past."""
        with self.env.read() as txn:
            state = self.index.state(txn, fid)
            record = self.index.record(txn, fid, uid) if state is not None else None
        if record is None:
            return None
        path = maildir.message_file(self.folder_dir(state), record.filename, record.flags, state.keywords)
        return path, record.size

    def notify_after(self, result: Any, *fids: int) -> Any:
        """Tell this process's listeners of committed changes; passes result on."""
        try:
            self.notifier.changed(fids)
        except Exception:
            self._log.failure("change notification failed")
        return result

    def retire_names(self, fid: int, stale: list[tuple[int, str]]) -> None:
        """Remove the old names of re-flagged messages, in a later write
        transaction: under the index's cross-process lock, and only a name
        that is not (again) the current one -- two quick flag changes
        A -> B -> A must not remove A.

        The flag change committed without a durable sync; an old name may go
        only once that commit survives a crash (else the index could come back
        naming a file that is gone).  So: one sync off the writer thread, then
        the unlinks under the writer's lock.  Names that arrive while a
        retirement runs wait for the next one, which needs a sync of its own
        (their commits may be later than the running sync): under a burst of
        STOREs that is one sync and one write for many, not three fsyncs each.
        """
        self._stale_names.setdefault(fid, []).extend(stale)
        if not self._retiring:
            self._retire_pending()

    def names_retired(self) -> defer.Deferred[None]:
        """Fires once no old name waits for retirement (now, or when the
        running retirements end): the explicit signal tests wait for."""
        if not self._retiring:
            return defer.succeed(None)
        d: defer.Deferred[None] = defer.Deferred()
        self._retired_waiters.append(d)
        return d

    def _retire_pending(self) -> None:
        if not self._stale_names:
            self._retiring = False
            waiters, self._retired_waiters = self._retired_waiters, []
            for d in waiters:
                d.callback(None)
            return
        batch, self._stale_names = self._stale_names, {}
        self._retiring = True
        index = self.index

        def job(txn: Any) -> None:
            for fid, stale in batch.items():
                state = index.state(txn, fid)
                if state is None:
                    continue
                folder_dir = self.folder_dir(state)
                current = {t[0]: t for t in index.get_many(txn, fid, [uid for uid, _path in stale])}
                for uid, path in stale:
                    t = current.get(uid)
                    if t is None or maildir.message_file(folder_dir, t[5], t[1], state.keywords) != path:
                        maildir.unlink_quiet(path)

        d = self.runner.io(self.env.sync)
        d.addCallback(lambda _: self.runner.write(job, durable=False))
        d.addErrback(lambda f: self._log.failure("cannot remove old names", f))
        d.addCallback(lambda _: self._retire_pending())

    def delete_for_good(self, fid: int, uids: list[int]) -> defer.Deferred[list[int]]:
        """Expunge without Recycle: index first, then the files."""
        index = self.index

        def job(txn: Any) -> tuple[list[int], list[str]]:
            state = index.state(txn, fid)
            if state is None:
                raise NoSuchFolder("the folder was deleted")
            folder_dir = self.folder_dir(state)
            editor = index.editor(txn, fid, state)
            now = self.runner.seconds()
            removed, paths = [], []
            for t in index.get_many(txn, fid, uids):
                editor.remove(t, now)
                removed.append(t[0])
                paths.append(maildir.message_file(folder_dir, t[5], t[1], state.keywords))
            editor.flush()
            return removed, paths

        def unlink(result: tuple[list[int], list[str]]) -> Any:
            removed, paths = result
            self.notify_after(None, fid)
            d = self.runner.io(_unlink_all, paths)
            d.addCallback(lambda _: removed)
            return d

        d = self.runner.write(job)
        d.addCallback(unlink)
        return d


def _unlink_all(paths: list[str]) -> None:
    for path in paths:
        maildir.unlink_quiet(path)
