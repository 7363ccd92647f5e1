# -*- test-case-name: tests.store.test_folder -*-
"""MaildirFolder: one folder as a session sees it (IFolder).

Reads are short LMDB read transactions on the calling thread; nothing here
lists a directory.  Writes go through xmail.store.delivery and
xmail.store.transfer, or run in one index write transaction (flags: the
file is renamed inside it so that names and index change under the same
cross-process lock).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger
from zope.interface import implementer

from xmail.store import delivery, maildir, names
from xmail.store.index import FolderState, UidIndex, decode_meta
from xmail.store.interfaces import (
    AppendResult,
    CopyResult,
    FolderStatus,
    IFolder,
    IFolderListener,
    MessageMeta,
    MessageRecord,
    NoSuchFolder,
    NoSuchMessage,
    StoreError,
)
from xmail.store.transfer import transfer

_log = Logger()
FLAG_BATCH = 2000  # messages re-flagged per index transaction


@implementer(IFolder)
class MaildirFolder:
    def __init__(self, mailbox: Any, fid: int, name: str, special_use: str | None):
        self.mailbox = mailbox
        self.store = mailbox.store
        self.fid = fid
        self.name = name
        self.special_use = special_use

    def __repr__(self) -> str:
        return f"<MaildirFolder {self.mailbox.address} {self.name!r}>"

    # -- reads -----------------------------------------------------------------------------------
    @property
    def _index(self) -> UidIndex:
        return self.store.index

    def _state(self, txn: Any) -> FolderState:
        state = self._index.state(txn, self.fid)
        if state is None:
            raise NoSuchFolder(f"folder {self.name!r} no longer exists")
        return state

    def status(self) -> FolderStatus:
        with self.store.env.read() as txn:
            s = self._state(txn)
        return FolderStatus(s.messages, s.unseen, s.uidnext, s.uidvalidity, s.modseq, s.size)

    def records(self, uids: Any = None) -> list[MessageRecord]:
        with self.store.env.read() as txn:
            if uids is None:
                return self._index.records(txn, self.fid)
            return self._index.records_for(txn, self.fid, uids)

    def record(self, uid: int) -> MessageRecord:
        with self.store.env.read() as txn:
            record = self._index.record(txn, self.fid, uid)
        if record is None:
            raise NoSuchMessage(f"no message with UID {uid}")
        return record

    def message_path(self, uid: int) -> str:
        path = self.store.current_path(self.fid, uid)
        if path is None:
            raise NoSuchMessage(f"no message with UID {uid}")
        return path

    def open_message(self, uid: int) -> maildir.MessageFile:
        """The message file, never through a symlink nor past the size the
        index recorded (maildir.MessageFile); raises NoSuchMessage."""
        # A concurrent flag change renames the file between our read and
        # open: look it up again a few times before giving up.
        for _attempt in range(3):
            found = self.store.current_file(self.fid, uid)
            if found is None:
                raise NoSuchMessage(f"no message with UID {uid}")
            path, size = found
            try:
                return maildir.MessageFile.open(path, size)
            except FileNotFoundError:
                continue
            except maildir.NotAMessageFile as e:
                # Planted by someone with access to the Maildir (issue 16
                # #11): refuse, and tell the operator which file it is.
                _log.warn("refusing to serve {path}: {why}", path=path, why=e.strerror)
                raise NoSuchMessage(f"the file of UID {uid} is not a regular file") from None
        raise NoSuchMessage(f"the file of UID {uid} is gone")

    def meta(self, uid: int) -> MessageMeta:
        with self.store.env.read() as txn:
            blob = self._index.meta(txn, self.fid, uid)
            # The meta entries go with the record (RecordEditor.remove), so a
            # blob means the message exists; only without one is the record
            # (a whole chunk to decode) consulted.
            if blob is None and self._index.get(txn, self.fid, uid) is None:
                raise NoSuchMessage(f"no message with UID {uid}")
            return decode_meta(blob)

    def body_search(self, needle: str, uids: Any) -> tuple[set[int], set[int]]:
        """SEARCH BODY through the full-text index: of uids -> (those whose
        body text contains needle, those it cannot decide -- not indexed
        yet, or cut short -- which the caller reads from their files).
        needle is case-folded; the text was case-folded when indexed.
        May block on SQLite: call it off the reactor."""
        if self.name == names.RECYCLE:
            return set(), set(uids)  # Recycle is not in the full-text index
        return self.store.fulltext.search(self.fid, needle, uids)

    def note_body_text(self, uid: int, text: str, cut: bool) -> None:
        """The body text a search read from the file of an undecided
        message: indexed for next time (any thread)."""
        if self.name != names.RECYCLE:
            self.store.fulltext.add_text(self.fid, uid, text, cut)

    def changed_since(self, modseq: int) -> list[MessageRecord]:
        """Records whose MODSEQ is greater than modseq, by UID (RFC 7162
        §3.1.4 CHANGEDSINCE); from the MODSEQ log, not a scan."""
        with self.store.env.read() as txn:
            changed = self._index.changed_uids_since(txn, self.fid, modseq)
            return self._index.records_for(txn, self.fid, changed)

    def expunged_since(self, modseq: int) -> list[int]:
        """UIDs expunged after modseq (RFC 7162 §3.2.5.2 VANISHED), by UID,
        from the tombstones; exact when modseq >= expunge_log_floor()."""
        with self.store.env.read() as txn:
            expunged = self._index.expunged_uids_since(txn, self.fid, modseq)
        return sorted(set(expunged))

    def expunge_log_floor(self) -> int:
        """The MODSEQ at or above which expunged_since is complete (0: the
        folder's log was never compacted)."""
        with self.store.env.read() as txn:
            return self._state(txn).expunge_floor

    def headers(self, uid: int) -> dict[str, str]:
        """The cached header fields of one message (MessageMeta.headers)
        without the structure and text digest; raises NoSuchMessage."""
        with self.store.env.read() as txn:
            if self._index.get(txn, self.fid, uid) is None:
                raise NoSuchMessage(f"no message with UID {uid}")
            return self._index.headers(txn, self.fid, uid)

    def headers_many(self, uids: Any) -> list[tuple[int, dict[str, str]]]:
        """(uid, headers) for the UIDs that exist, in UID order; one read
        transaction (SEARCH on header fields over many messages)."""
        with self.store.env.read() as txn:
            return [(t[0], self._index.headers(txn, self.fid, t[0]))
                    for t in self._index.get_many(txn, self.fid, uids)]

    # -- writes ----------------------------------------------------------------------------------
    def append(self, source: bytes | str, flags: Any = (), internaldate: float | None = None
               ) -> defer.Deferred[AppendResult]:
        try:
            checked = delivery.validate_flags(flags)
        except StoreError:
            return defer.fail()
        when = internaldate if internaldate is not None else self.store.runner.seconds()
        return delivery.append(self.store, self.mailbox.address, self.fid, source, checked, when,
                               sent_dedup=self.special_use == "\\Sent")

    def set_flags(self, uids: Any, flags: Any, mode: str, unchanged_since: int | None = None
                  ) -> defer.Deferred[tuple[list[MessageRecord], list[int]]]:
        if mode not in ("set", "add", "remove"):
            return defer.fail(ValueError(f"bad flag mode {mode!r}"))
        try:
            wanted = delivery.validate_flags(flags)
        except StoreError:
            return defer.fail()
        uids = sorted(set(int(u) for u in uids))
        index = self._index
        fid = self.fid
        store = self.store

        def job(txn: Any, uids: list[int]) -> tuple[list[MessageRecord], list[int], list[tuple[int, str]]]:
            state = index.state(txn, fid)
            if state is None:
                raise NoSuchFolder("the folder was deleted")
            folder_dir = store.folder_dir(state)
            cur = os.path.join(folder_dir, "cur")
            editor = index.editor(txn, fid, state)
            changed: list[MessageRecord] = []
            refused: list[int] = []
            stale: list[tuple[int, str]] = []
            for t in index.get_many(txn, fid, uids):
                # RFC 7162 §3.1.3: UNCHANGEDSINCE fails for a message whose
                # MODSEQ is greater; it is reported, not changed.
                if unchanged_since is not None and t[2] > unchanged_since:
                    refused.append(t[0])
                    continue
                if mode == "set":
                    new_flags = wanted
                elif mode == "add":
                    new_flags = t[1] | wanted
                else:
                    new_flags = t[1] - wanted
                if new_flags == t[1]:
                    continue
                old_letters = maildir.info_letters(t[1], state.keywords)
                new = editor.set_flags(t, frozenset(new_flags))
                letters = delivery.assign_keywords(state, folder_dir, new[1])
                if letters != old_letters:
                    # The file gets its new name as a second link; the old
                    # name goes only after the commit, so a reader holding
                    # either the old or the new record always finds it.
                    old_path = os.path.join(cur, maildir.entry_name(t[5], old_letters))
                    new_path = os.path.join(cur, maildir.entry_name(t[5], letters))
                    try:
                        os.link(old_path, new_path)
                        stale.append((t[0], old_path))
                    except FileExistsError:  # a retried transaction, or A -> B -> A
                        stale.append((t[0], old_path))
                    except FileNotFoundError:
                        if not os.path.exists(new_path):
                            _log.warn("message file {base} missing in {dir}", base=t[5], dir=cur)
                changed.append(MessageRecord(*new))
            editor.flush()
            return changed, refused, stale

        @defer.inlineCallbacks
        def run() -> Any:
            # A few thousand renames per transaction at most: a STORE on a
            # huge folder must not hold up deliveries for seconds.
            changed: list[MessageRecord] = []
            refused: list[int] = []
            for start in range(0, len(uids), FLAG_BATCH):
                part = uids[start:start + FLAG_BATCH]
                # A flag change need not survive a system crash (Dovecot's
                # mail_fsync=optimized promises no more; the new file name
                # is in the Maildir too): no wait for a durable sync.
                done, skipped, stale = yield store.runner.write(lambda txn, p=part: job(txn, p),
                                                                durable=False)
                changed.extend(done)
                refused.extend(skipped)
                store.notify_after(None, fid)
                if stale:
                    store.retire_names(fid, stale)
            return changed, refused

        return run()

    def _dest_fid(self, dest: str) -> int:
        return self.mailbox.folder(dest).fid

    def copy(self, uids: Any, dest: str) -> defer.Deferred[CopyResult]:
        try:
            dest_fid = self._dest_fid(dest)
        except StoreError:
            return defer.fail()
        d = transfer(self.store, self.fid, uids, dest_fid, remove_source=False,
                     recycle=self.mailbox.is_recycle(dest_fid))
        return d.addCallback(self._transferred, dest, dest_fid)

    def move(self, uids: Any, dest: str) -> defer.Deferred[CopyResult]:
        try:
            dest_fid = self._dest_fid(dest)
        except StoreError:
            return defer.fail()
        # Into the same folder too: RFC 6851 §3.3 makes MOVE a COPY plus an
        # expunge, so the messages get new UIDs (transfer handles src == dest).
        d = transfer(self.store, self.fid, uids, dest_fid, remove_source=True, check_quota=False,
                     recycle=self.mailbox.is_recycle(dest_fid))
        return d.addCallback(self._transferred, dest, dest_fid)

    def _transferred(self, result: CopyResult, dest: str, dest_fid: int) -> CopyResult:
        if result.dest_uids and self.store.transfer_observers:
            self.store.transferred(self.mailbox.address, self.name, dest, dest_fid, result.dest_uids)
        return result

    def discard(self, uids: Any) -> defer.Deferred[list[int]]:
        return self.store.delete_for_good(self.fid, sorted(set(int(u) for u in uids)))

    def expunge(self, uids: Any) -> defer.Deferred[list[int]]:
        uids = sorted(set(int(u) for u in uids))
        if self.name == names.RECYCLE:
            return self.store.delete_for_good(self.fid, uids)
        recycle_fid = self.mailbox.recycle_fid()
        if recycle_fid is None:
            return self.store.delete_for_good(self.fid, uids)
        # An expunge need not survive a system crash, like a flag change
        # (transfer's durable=False: the message is never lost).
        d = transfer(self.store, self.fid, uids, recycle_fid, remove_source=True, recycle=True,
                     check_quota=False, durable=False)
        d.addCallback(lambda result: list(result.source_uids))
        return d

    # -- change notification --------------------------------------------------------------------
    def subscribe_changes(self, listener: IFolderListener) -> None:
        self.store.notifier.subscribe(self, listener)

    def unsubscribe_changes(self, listener: IFolderListener) -> None:
        self.store.notifier.unsubscribe(self, listener)

    def poll_changes(self) -> None:
        self.store.notifier.check_drop_ins(self.fid)
        self.store.notifier.poll([self.fid])
