# -*- test-case-name: tests.store.test_folder -*-
"""Messages from one folder into another: COPY, MOVE, expunge into Recycle
and restore out of it.

The destination gets a hard link under a fresh unique name (a copy plus
fsync across file systems), its cur/ directory is fsynced, then one write
transaction adds the destination records and, for a move, removes the
source records; the source files are unlinked only after that commit.  A
crash in between leaves an extra file that `reindex` picks up, never a lost
message.
"""

from __future__ import annotations

import os
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from xmail.store import maildir, quota
from xmail.store.delivery import place_keywords, subject_of, system_letters
from xmail.store.index import UidIndex
from xmail.store.interfaces import CopyResult, NoSuchFolder

_log = Logger()
DAY = 86400.0


def transfer(store: Any, src_fid: int, uids: Any, dest_fid: int, *, remove_source: bool,
             recycle: bool = False, check_quota: bool = True, durable: bool = True
             ) -> defer.Deferred[CopyResult]:
    """Copy (remove_source=False) or move uids of src_fid into dest_fid.

    recycle=True records the original folder and expiry for Recycle.
    Fires with UIDPLUS data (RFC 4315 §3) for the messages that existed.
    durable=False (an expunge into Recycle): fires once the change is
    committed, before the new links and the commit are fsynced; the source
    files are unlinked only after both are, so a system crash can undo the
    expunge (the message is back, perhaps also in Recycle) but never lose
    the message (docs/decisions.md, "Durability of index writes").
    """
    index: UidIndex = store.index
    runner = store.runner
    with store.env.read() as txn:
        src_state = index.state(txn, src_fid)
        dest_state = index.state(txn, dest_fid)
        if src_state is None or dest_state is None:
            return defer.fail(NoSuchFolder("the folder no longer exists"))
        tuples = index.get_many(txn, src_fid, uids)
        address = dest_state.address
        limit = quota.limits(store.directory, store.settings, address)
        if check_quota and tuples:
            try:
                quota.check(index.usage(txn, address), limit, sum(t[3] for t in tuples), len(tuples))
            except Exception:
                return defer.fail()
    if not tuples:
        return defer.succeed(CopyResult(dest_state.uidvalidity, (), ()))
    src_dir = store.folder_dir(src_state)
    dest_dir = store.folder_dir(dest_state)
    src_keywords = list(src_state.keywords)

    def link_all() -> list[tuple[tuple, str, str]]:
        dest_cur = os.path.join(dest_dir, "cur")
        linked = []
        for t in tuples:
            base = maildir.unique_name(t[3])
            letters = system_letters(t[1])
            dest = os.path.join(dest_cur, maildir.entry_name(base, letters))
            src = maildir.message_file(src_dir, t[5], t[1], src_keywords)
            try:
                maildir.link_or_copy(src, dest)
            except FileNotFoundError:
                # Renamed by a flag change since we looked: look again once.
                src = store.current_path(src_fid, t[0])
                if src is None:
                    continue
                try:
                    maildir.link_or_copy(src, dest)
                except (FileNotFoundError, maildir.NotAMessageFile):
                    continue
            except maildir.NotAMessageFile as e:
                # Planted in the Maildir (issue 16 #11): not copied, as if
                # expunged; the operator learns which file it is.
                _log.warn("not copying {path}: {why}", path=src, why=e.strerror)
                continue
            linked.append((t, base, letters))
        if linked and durable:
            store.syncer.sync(dest_cur)
        return linked

    def commit(linked: list[tuple[tuple, str, str]]) -> Any:
        now = runner.seconds()
        expires = now + store.settings.limits.recycle_days * DAY

        def job(txn: Any) -> tuple[list[tuple[int, int]], list[str], int]:
            src = index.state(txn, src_fid)
            dest = index.state(txn, dest_fid) if dest_fid != src_fid else src
            if dest is None or src is None:
                raise NoSuchFolder("the folder was deleted")
            src_editor = index.editor(txn, src_fid, src)
            dest_editor = src_editor if dest_fid == src_fid else index.editor(txn, dest_fid, dest)
            if check_quota:
                quota.check(index.usage(txn, address), limit, sum(t[3] for t, _b, _l in linked), len(linked))
            pairs: list[tuple[int, int]] = []
            stale: list[str] = []
            for t, base, letters in linked:
                current = src_editor.get(t[0])
                if current is None and remove_source:
                    # Expunged by someone else meanwhile: drop our link.
                    stale.append(os.path.join(dest_dir, "cur", maildir.entry_name(base, letters)))
                    continue
                source = current or t
                meta = index.meta(txn, src_fid, t[0])
                record = dest_editor.add(source[1], source[3], source[4], base, meta,
                                         copied_from=(src_fid, t[0]))
                place_keywords(dest, dest_dir, base, source[1], letters)
                if recycle:
                    original = src.name
                    info = index.recycle_info(txn, src_fid, t[0])
                    if info is not None:  # moved around inside Recycle: keep where it came from
                        original, expired_at, expires_at = info[0], info[1], info[2]
                    else:
                        expired_at, expires_at = now, expires
                    index.put_recycle(txn, dest_fid, record[0],
                                      (original, expired_at, expires_at, subject_of(meta)))
                if remove_source and current is not None:
                    src_editor.remove(current, now)
                    stale.append(maildir.message_file(src_dir, current[5], current[1], src.keywords))
                pairs.append((t[0], record[0]))
            # The destination first: its full-text copies must read the
            # source rows before the source's removals delete them.
            if dest_editor is not src_editor:
                dest_editor.flush()
            src_editor.flush()
            return pairs, stale, dest.uidvalidity

        d = runner.write(job, durable=durable)

        def undo(failure: Any) -> Any:
            cur = os.path.join(dest_dir, "cur")
            paths = [os.path.join(cur, maildir.entry_name(b, letters)) for _t, b, letters in linked]
            runner.io(_unlink_all, paths).addErrback(lambda f: _log.failure("cleanup failed", f))
            return failure

        def done(result: tuple[list[tuple[int, int]], list[str], int]) -> CopyResult:
            pairs, stale, uidvalidity = result
            if stale and durable:
                runner.io(_unlink_all, stale).addErrback(lambda f: _log.failure("unlink failed", f))
            elif stale:
                runner.io(_sync_then_unlink, store, os.path.join(dest_dir, "cur"), stale
                          ).addErrback(lambda f: _log.failure("unlink failed", f))
            store.notify_after(None, src_fid, dest_fid)
            return CopyResult(uidvalidity, tuple(p[0] for p in pairs), tuple(p[1] for p in pairs))

        d.addCallbacks(done, undo)
        return d

    d = runner.io(link_all)
    d.addCallback(commit)
    return d


def _sync_then_unlink(store: Any, dest_cur: str, paths: list[str]) -> None:
    """On a file thread: make the new links and the index commit durable,
    then remove the source files."""
    store.syncer.sync(dest_cur)
    store.env.sync()
    _unlink_all(paths)


def _unlink_all(paths: list[str]) -> None:
    for path in paths:
        maildir.unlink_quiet(path)
