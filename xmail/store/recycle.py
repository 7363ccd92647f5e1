# -*- test-case-name: tests.store.test_recycle -*-
"""Recycle: where expunged messages wait `recycle_days` before they are purged.

Expunging outside Recycle moves the message here (xmail.store.transfer with
recycle=True) and records its original folder, the time and the expiry in
the index (store.recycle).  `purge_expired(now)` deletes what has expired
(the core service runs it hourly); restoring moves a message back to the
folder it came from, under a new UID, or to INBOX if that folder is gone.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from xmail.store import maildir, names
from xmail.store.interfaces import NoSuchFolder, RecycledMessage
from xmail.store.transfer import transfer

_log = Logger()
SENT_ID_KEEP = 3600.0  # send-save dedup needs 10 minutes; keep an hour
EXPUNGE_LOG_KEEP = 30 * 86400.0  # sessions idle longer than this resync fully


def recycle_list(mailbox: Any) -> list[RecycledMessage]:
    store = mailbox.store
    index = store.index
    with store.env.read() as txn:
        fid = index.folder_id(txn, mailbox.address, names.RECYCLE)
        if fid is None:
            return []
        out = []
        for _fid, uid, info in index.recycle_entries(txn, fid):
            t = index.get(txn, fid, uid)
            if t is None:
                continue
            original, expunged_at, expires_at, subject = info
            out.append(RecycledMessage(uid, original, expunged_at, expires_at, t[3], subject))
        # Messages moved into Recycle by a client carry no entry: they
        # expire like an expunge made when they arrived.
        known = {m.uid for m in out}
        days = store.settings.limits.recycle_days * 86400.0
        for t in index.iter_tuples(txn, fid):
            if t[0] not in known:
                out.append(RecycledMessage(t[0], "INBOX", t[4], t[4] + days, t[3]))
    out.sort(key=lambda m: (m.expunged_at, m.uid))
    return out


def recycle_restore(mailbox: Any, uids: Any) -> defer.Deferred[list[tuple[int, str, int]]]:
    store = mailbox.store
    index = store.index
    wanted = set(int(u) for u in uids)
    by_folder: dict[str, list[int]] = {}
    for message in recycle_list(mailbox):
        if message.uid in wanted:
            by_folder.setdefault(message.original_folder, []).append(message.uid)
    with store.env.read() as txn:
        recycle_fid = index.folder_id(txn, mailbox.address, names.RECYCLE)
        targets = {}
        for original in by_folder:
            fid = index.folder_id(txn, mailbox.address, original) if original != names.RECYCLE else None
            targets[original] = (original, fid) if fid is not None else (
                "INBOX", index.folder_id(txn, mailbox.address, "INBOX"))
    if recycle_fid is None:
        return defer.fail(NoSuchFolder("no Recycle folder"))
    results: list[tuple[int, str, int]] = []

    @defer.inlineCallbacks
    def run() -> Any:
        for original, recycled in sorted(by_folder.items()):
            name, dest_fid = targets[original]
            copied = yield transfer(store, recycle_fid, recycled, dest_fid, remove_source=True,
                                    check_quota=False)
            results.extend((src, name, dest) for src, dest in zip(copied.source_uids, copied.dest_uids,
                                                                   strict=True))
        return sorted(results)

    return run()


def purge_expired(store: Any, now: float) -> defer.Deferred[int]:
    index = store.index

    def job(txn: Any) -> list[str]:
        expired: dict[int, list[int]] = {}
        for fid, uid, info in index.recycle_entries(txn):
            if info[2] <= now:
                expired.setdefault(fid, []).append(uid)
        paths: list[str] = []
        for fid, uids in expired.items():
            state = index.state(txn, fid)
            if state is None:
                continue
            folder_dir = store.folder_dir(state)
            editor = index.editor(txn, fid, state)
            for t in index.get_many(txn, fid, uids):
                editor.remove(t, now)
                paths.append(maildir.message_file(folder_dir, t[5], t[1], state.keywords))
            editor.flush()
        index.prune_sent_ids(txn, now - SENT_ID_KEEP)
        index.prune_expunge_log(txn, now - EXPUNGE_LOG_KEEP)
        return paths

    def unlink(paths: list[str]) -> Any:
        def remove() -> int:
            for path in paths:
                maildir.unlink_quiet(path)
            return len(paths)

        if paths:
            _log.info("purged {count} expired messages from Recycle", count=len(paths))
        return store.runner.io(remove)

    d = store.runner.write(job)
    d.addCallback(unlink)
    return d
