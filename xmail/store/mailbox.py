# -*- test-case-name: tests.store.test_mailbox -*-
"""Mailbox: all folders of one user (IMailbox).

Folder operations change the index and the Maildir++ directories together
inside one write transaction (directory renames are cheap and must happen
under the same cross-process lock as the index change); message data moves
through xmail.store.transfer.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from xmail.store import delivery, maildir, names, quota
from xmail.store.folder import MaildirFolder
from xmail.store.index import UidIndex
from xmail.store.interfaces import (
    AppendResult,
    FolderExists,
    FolderInfo,
    FolderNotAllowed,
    IMailbox,
    NoSuchFolder,
    QuotaUsage,
    RecycledMessage,
    StoreError,
)
from xmail.store.reindex import DELETED_PREFIX

_log = Logger()


@implementer(IMailbox)
class Mailbox:
    def __init__(self, store: Any, address: str):
        self.store = store
        self.address = address
        self.root = names.user_root(store.mail_dir, address)

    def __repr__(self) -> str:
        return f"<Mailbox {self.address}>"

    @property
    def _index(self) -> UidIndex:
        return self.store.index

    # -- reads -----------------------------------------------------------------------------------
    def list_folders(self) -> list[FolderInfo]:
        with self.store.env.read() as txn:
            entries = self._index.folder_ids(txn, self.address)
            subscribed = self._index.subscriptions(txn, self.address)
            infos = []
            for name, fid in entries:
                state = self._index.state(txn, fid)
                infos.append(FolderInfo(name, state.special_use if state else None, name in subscribed,
                                        fid))
        infos.sort(key=lambda i: (i.name != "INBOX", i.name))
        return infos

    def subscriptions(self) -> list[str]:
        """Subscriptions, including names that do not exist (RFC 3501 §6.3.6)."""
        with self.store.env.read() as txn:
            return sorted(self._index.subscriptions(txn, self.address))

    def _lookup(self, name: str) -> tuple[int, str, str | None]:
        name = names.normalize(name)
        with self.store.env.read() as txn:
            fid = self._index.folder_id(txn, self.address, name)
            state = self._index.state(txn, fid) if fid is not None else None
        if state is None:
            raise NoSuchFolder(f"no folder {name!r}")
        return fid, name, state.special_use

    def folder(self, name: str) -> MaildirFolder:
        fid, name, special_use = self._lookup(name)
        self.store.notifier.opened(fid)
        return MaildirFolder(self, fid, name, special_use)

    def folder_by_special_use(self, use: str) -> MaildirFolder:
        with self.store.env.read() as txn:
            for name, fid in self._index.folder_ids(txn, self.address):
                state = self._index.state(txn, fid)
                if state is not None and state.special_use and state.special_use.lower() == use.lower():
                    return MaildirFolder(self, fid, name, state.special_use)
        raise NoSuchFolder(f"no folder with special-use {use}")

    def recycle_fid(self) -> int | None:
        with self.store.env.read() as txn:
            return self._index.folder_id(txn, self.address, names.RECYCLE)

    def is_recycle(self, fid: int) -> bool:
        return fid == self.recycle_fid()

    def quota(self) -> QuotaUsage:
        with self.store.env.read() as txn:
            used = self._index.usage(txn, self.address)
        return quota.usage(used, quota.limits(self.store.directory, self.store.settings, self.address))

    # -- folder changes ------------------------------------------------------------------------
    def create_folder(self, name: str, special_use: str | None = None) -> defer.Deferred[None]:
        try:
            name = names.normalize(name)
            names.check_creatable(name)
            wanted = names.parent_names(name) + [name]
            dirnames = {n: names.folder_dirname(n) for n in wanted}
        except StoreError:
            return defer.fail()
        index = self._index
        address = self.address
        root = self.root
        store = self.store

        def job(txn: Any) -> None:
            if index.folder_id(txn, address, name) is not None:
                raise FolderExists(f"folder {name!r} exists")
            now = store.runner.seconds()
            for each in wanted:
                if index.folder_id(txn, address, each) is not None:
                    continue
                # Directories inside the transaction: a racing CREATE of the
                # same name in another process waits for our commit.
                maildir.make_folder_dirs(os.path.join(root, dirnames[each]), subfolder=True)
                index.create_folder(txn, address, each, dirnames[each],
                                    special_use if each == name else None, now)
            # The new directory entries must outlive a crash as the index does.
            maildir.fsync_dir(root)

        return store.runner.write(job).addCallback(store.notifier.lists_after, address)

    def delete_folder(self, name: str) -> defer.Deferred[None]:
        try:
            fid, name, _use = self._lookup(name)
            if name == "INBOX" or names.is_protected(name):
                raise FolderNotAllowed(f"folder {name!r} cannot be deleted")
        except StoreError:
            return defer.fail()
        # Its messages go to Recycle like any expunge, then the folder goes;
        # mail that arrives in between is expunged too, never dropped.
        folder = MaildirFolder(self, fid, name, None)

        def attempt(_: Any = None, tries: int = 5) -> defer.Deferred[None]:
            d = folder.expunge([r.uid for r in folder.records()])
            d.addCallback(lambda _: self._drop(fid, name, force=tries <= 1))
            d.addCallback(lambda dropped: None if dropped else attempt(tries=tries - 1))
            return d

        return attempt()

    def _drop(self, fid: int, name: str, *, force: bool = False) -> defer.Deferred[bool]:
        """Remove the folder if it is (still) empty, or anyway when forced;
        fires False when messages arrived since the expunge."""
        index = self._index
        store = self.store
        root = os.path.abspath(self.root)

        def job(txn: Any) -> str | bool | None:
            state = index.state(txn, fid)
            if state is None:
                return None
            if state.messages and not force:
                return False
            # Forced (mail keeps arriving): what came since the expunge goes
            # with the folder.
            index.add_usage(txn, self.address, -state.size, -state.messages)
            index.drop_folder(txn, fid, state)
            path = os.path.abspath(os.path.join(root, state.dirname))
            # Never anything but a "."-directory directly below the user root.
            if os.path.dirname(path) != root or not state.dirname.startswith("."):
                raise StoreError(f"refusing to remove {path}")
            trash = os.path.join(root, f"{DELETED_PREFIX}{fid}")
            try:
                os.rename(path, trash)
            except FileNotFoundError:
                return None
            return trash

        def remove(trash: str | bool | None) -> Any:
            if trash is False:
                return False
            store.notify_after(None, fid)
            store.notifier.lists_after(None, self.address)
            if trash:
                return store.runner.io(shutil.rmtree, trash, True).addCallback(lambda _: True)
            return True

        d = store.runner.write(job)
        d.addCallback(remove)
        return d

    def rename_folder(self, old: str, new: str) -> defer.Deferred[None]:
        try:
            fid, old, _use = self._lookup(old)
            new = names.normalize(new)
            names.check_creatable(new)
            if new == old:
                raise FolderExists(f"folder {new!r} exists")
            if names.is_protected(old) and old != "INBOX":
                raise FolderNotAllowed(f"folder {old!r} cannot be renamed")
            if names.is_protected(new) or new.startswith(old + names.DELIMITER):
                raise FolderNotAllowed(f"cannot rename {old!r} to {new!r}")
            names.folder_dirname(new)
        except StoreError:
            return defer.fail()
        if old == "INBOX":
            return self._rename_inbox(fid, new)
        index = self._index
        address = self.address
        root = self.root
        store = self.store
        parents = names.parent_names(new)

        def job(txn: Any) -> list[int]:
            if index.folder_id(txn, address, new) is not None:
                raise FolderExists(f"folder {new!r} exists")
            moving = [(n, f) for n, f in index.folder_ids(txn, address)
                      if n == old or n.startswith(old + names.DELIMITER)]
            if not moving:
                raise NoSuchFolder(f"no folder {old!r}")
            plan = []
            for each, each_fid in moving:
                target = new + each[len(old):]
                if index.folder_id(txn, address, target) is not None:
                    raise FolderExists(f"folder {target!r} exists")
                source_dir = os.path.join(root, index.state(txn, each_fid).dirname)
                if os.path.exists(os.path.join(root, names.folder_dirname(target))) \
                        and os.path.exists(source_dir):
                    # A directory the index does not know (another program's): keep it.
                    # (Only the source gone means a retried transaction moved it.)
                    raise FolderExists(f"a directory for {target!r} exists; run reindex")
                plan.append((each, each_fid, target, names.folder_dirname(target)))
            now = store.runner.seconds()
            for parent in parents:  # RFC 3501 §6.3.5: superiors are created
                if index.folder_id(txn, address, parent) is None:
                    dirname = names.folder_dirname(parent)
                    maildir.make_folder_dirs(os.path.join(root, dirname), subfolder=True)
                    index.create_folder(txn, address, parent, dirname, None, now)
            subs = index.subscriptions(txn, address)
            done: list[tuple[str, str]] = []
            try:
                for each, each_fid, target, dirname in plan:
                    state = index.state(txn, each_fid)
                    src = os.path.join(root, state.dirname)
                    dest = os.path.join(root, dirname)
                    if os.path.exists(src):
                        os.rename(src, dest)
                        done.append((src, dest))
                    elif not os.path.exists(dest):  # lost its directory: give it a new one
                        maildir.make_folder_dirs(dest, subfolder=True)
                    index.rename_folder_entry(txn, each_fid, state, target, dirname)
                    if each in subs:
                        index.set_subscribed(txn, address, each, False)
                        index.set_subscribed(txn, address, target, True)
                maildir.fsync_dir(root)
            except BaseException:
                for src, dest in reversed(done):
                    os.rename(dest, src)
                raise
            return [f for _n, f, _t, _d in plan]

        d = store.runner.write(job)
        d.addCallback(lambda fids: store.notify_after(None, *fids))
        d.addCallback(store.notifier.lists_after, address)
        return d

    def _rename_inbox(self, inbox_fid: int, new: str) -> defer.Deferred[None]:
        # RFC 3501 §6.3.5: all INBOX messages move to the new folder, INBOX
        # stays (empty) and its sub-folders are not renamed.
        d = self.create_folder(new)

        def move(_: Any) -> Any:
            inbox = MaildirFolder(self, inbox_fid, "INBOX", None)
            uids = [r.uid for r in inbox.records()]
            return inbox.move(uids, new) if uids else None

        d.addCallback(move)
        d.addCallback(lambda _: None)
        return d

    def set_subscribed(self, name: str, subscribed: bool) -> defer.Deferred[None]:
        try:
            name = names.normalize(name)
        except StoreError:
            return defer.fail()
        index = self._index
        d = self.store.runner.write(lambda txn: index.set_subscribed(txn, self.address, name, subscribed))
        return d.addCallback(self.store.notifier.lists_after, self.address)

    # -- folder list notification ----------------------------------------------------------------
    def subscribe_list_changes(self, listener: Any) -> None:
        self.store.notifier.subscribe_lists(self, listener)

    def unsubscribe_list_changes(self, listener: Any) -> None:
        self.store.notifier.unsubscribe_lists(self, listener)

    # -- send-save --------------------------------------------------------------------------------
    def save_sent(self, source: bytes | str, message_id: str | None) -> defer.Deferred[AppendResult]:
        try:
            sent = self.folder_by_special_use("\\Sent")
        except StoreError:
            return defer.fail()
        store = self.store
        return delivery.append(store, self.address, sent.fid, source, frozenset({"\\Seen"}),
                               store.runner.seconds(),
                               remember_sent=True, message_id=delivery.normalize_message_id(message_id))

    # -- Recycle ---------------------------------------------------------------------------------------
    def recycle_list(self) -> list[RecycledMessage]:
        from xmail.store.recycle import recycle_list

        return recycle_list(self)

    def recycle_restore(self, uids: Any) -> defer.Deferred[list[tuple[int, str, int]]]:
        from xmail.store.recycle import recycle_restore

        return recycle_restore(self, uids)
