# -*- test-case-name: tests.store.test_reindex -*-
"""Rebuilding the index from the Maildir, and adopting foreign files.

`pickup_new` takes mail another program dropped into a folder's new/: each
file is claimed by linking it into cur/ (under its own base name when it
already has CRLF line endings, else as a CRLF-normalised copy under a new
unique name) and unlinking the original from new/ -- of two processes
racing for one file only the one whose unlink succeeds keeps its copy.  The
claimed files are then indexed.

`reindex` compares each folder's cur/ and new/ with the index inside one
write transaction per folder (so the daemon's renames and commits cannot
interleave with the comparison, and wait for one folder at most):
a record whose file name (without the flags) is still there keeps its UID
and takes the flags from the name; records without a file are removed;
files without a record are adopted with new UIDs.  The by-name index lets a
delivery that was in flight meanwhile find its file already indexed instead
of indexing it twice.  A foreign or corrupt file (not regular, empty,
unreadable, too large) is skipped with a log line.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from xmail.message import parse_message
from xmail.store import maildir, names
from xmail.store.delivery import parse_meta, place_keywords, subject_of, system_letters
from xmail.store.fulltext import rowid
from xmail.store.index import UidIndex

_log = Logger()
DELETED_PREFIX = "..deleted."  # xmail.store.mailbox renames a deleted folder to this first


class Skip(Exception):
    """A file we will not adopt; the message says why."""


def _read_candidate(path: str, max_size: int) -> tuple[bytes, float]:
    """The bytes and mtime of a file to adopt; symlinks and other
    non-regular files are refused without being followed (issue 16 #11:
    a planted link must not make another file's bytes a message)."""
    try:
        data, st = maildir.read_regular(path, max_size * 2 if max_size else 0)
    except maildir.NotAMessageFile as e:
        raise Skip(e.strerror) from None
    except OSError as e:
        if e.errno == errno.EFBIG:
            raise Skip(f"larger than the message size limit ({e.strerror})") from None
        raise Skip(f"cannot read: {e.strerror}") from None
    if not data:
        raise Skip("empty file")
    return data, st.st_mtime


def _group_by_base(cur: str) -> tuple[dict[str, list[str]], int]:
    """cur/ entries by base name -> (groups, entries skipped).  Only regular
    files count: a symlink (or FIFO, directory...) is neither a message nor
    evidence that a recorded message still exists."""
    groups: dict[str, list[str]] = {}
    skipped = 0
    for entry in sorted(os.listdir(cur)):
        if entry.startswith("."):
            continue
        try:
            regular = stat.S_ISREG(os.lstat(os.path.join(cur, entry)).st_mode)
        except FileNotFoundError:
            continue
        if not regular:
            _log.warn("reindex: skipping {path}: not a regular file", path=os.path.join(cur, entry))
            skipped += 1
            continue
        groups.setdefault(maildir.split_info(entry)[0], []).append(entry)
    return groups, skipped


def _adopt(folder_dir: str, path: str, data: bytes, syncer: Any, *, keep_name: bool = True
           ) -> tuple[str, str, int, bool]:
    """Make the message at path a cur/ file of ours -> (base, letters, size, copied).

    A clean file keeps its base name (so that a delivery in flight finds
    its own file indexed by name); one with bare LF gets a CRLF copy under
    a new unique name.  copied: a new file was made, the caller unlinks path.
    """
    fixed = maildir.to_crlf(data)
    entry = os.path.basename(path)
    base, letters = maildir.split_info(entry)
    flags = frozenset(maildir.flags_from_letters(letters, []))
    letters = system_letters(flags)
    cur = os.path.join(folder_dir, "cur")
    in_cur = os.path.dirname(path) == cur
    if fixed is data and keep_name and base:
        if in_cur:
            if maildir.entry_name(base, letters) != entry:
                os.rename(path, os.path.join(cur, maildir.entry_name(base, letters)))
            return base, letters, len(fixed), False
        try:
            maildir.link_or_copy(path, os.path.join(cur, maildir.entry_name(base, letters)))
            return base, letters, len(fixed), True
        except FileExistsError:
            pass
    if fixed is data:
        base = maildir.unique_name(len(fixed))
        maildir.link_or_copy(path, os.path.join(cur, maildir.entry_name(base, letters)))
    else:
        base = maildir.deliver_file(folder_dir, fixed, letters, syncer)
    return base, letters, len(fixed), True


def pickup_new(store: Any, fid: int) -> defer.Deferred[int]:
    """Index the files another program put into new/; fires with how many."""
    index: UidIndex = store.index
    with store.env.read() as txn:
        state = index.state(txn, fid)
    if state is None:
        return defer.succeed(0)
    folder_dir = store.folder_dir(state)
    keywords = list(state.keywords)
    max_size = store.settings.limits.max_message_size

    def claim() -> list[tuple[str, str, int, float, frozenset[str], bytes]]:
        new = os.path.join(folder_dir, "new")
        try:
            entries = sorted(os.listdir(new))
        except OSError:
            return []
        claimed = []
        for entry in entries:
            if entry.startswith("."):
                continue
            path = os.path.join(new, entry)
            try:
                data, mtime = _read_candidate(path, max_size)
                base, letters, size, _copied = _adopt(folder_dir, path, data, store.syncer)
            except Skip as e:
                _log.warn("skipping {path}: {why}", path=path, why=e)
                continue
            except OSError as e:
                _log.warn("cannot pick up {path}: {error}", path=path, error=e)
                continue
            mine = os.path.join(folder_dir, "cur", maildir.entry_name(base, letters))
            try:
                os.unlink(path)
            except FileNotFoundError:
                # Another process claimed it first.
                maildir.unlink_quiet(mine)
                continue
            flags = frozenset(maildir.flags_from_letters(maildir.split_info(entry)[1], keywords))
            claimed.append((base, letters, size, mtime, flags, parse_meta(maildir.to_crlf(data))))
        if claimed:
            store.syncer.sync(os.path.join(folder_dir, "cur"))
        return claimed

    def commit(claimed: list) -> Any:
        if not claimed:
            return 0

        def job(txn: Any) -> int:
            current = index.state(txn, fid)
            if current is None:
                return 0
            editor = index.editor(txn, fid, current)
            count = 0
            for base, letters, size, mtime, flags, meta in claimed:
                if index.uid_by_name(txn, fid, base) is not None:
                    continue
                editor.add(flags, size, mtime, base, meta)
                place_keywords(current, folder_dir, base, flags, letters)
                count += 1
            editor.flush()
            return count

        d = store.runner.write(job)
        d.addCallback(store.notify_after, fid)
        return d

    d = store.runner.io(claim)
    d.addCallback(commit)
    return d


def _user_roots(store: Any) -> dict[str, str]:
    """Addresses with a Maildir on disk, from the directory layout."""
    found: dict[str, str] = {}
    try:
        domains = os.listdir(store.mail_dir)
    except OSError:
        return found
    for domain in domains:
        domain_dir = os.path.join(store.mail_dir, domain)
        if not os.path.isdir(domain_dir):
            continue
        for local in os.listdir(domain_dir):
            try:
                address = names.canonical_address(f"{_unescape(local)}@{domain}")
            except Exception:
                continue
            if os.path.abspath(names.user_root(store.mail_dir, address)) == os.path.abspath(
                    os.path.join(domain_dir, local)):
                found[address] = os.path.join(domain_dir, local)
    return found


def _unescape(local: str) -> str:
    raw = bytearray()
    i = 0
    while i < len(local):
        if local[i] == "%" and i + 2 < len(local) + 1:
            try:
                raw.append(int(local[i + 1:i + 3], 16))
                i += 3
                continue
            except ValueError:
                pass
        raw.extend(local[i].encode())
        i += 1
    return raw.decode("utf-8", "replace")


def reindex(store: Any, address: str | None) -> defer.Deferred[dict[str, int]]:
    if address is not None:
        try:
            addresses = [names.canonical_address(address)]
        except Exception:
            return defer.fail()
    else:
        with store.env.read() as txn:
            addresses = sorted(set(store.index.all_users(txn)) | set(_user_roots(store)))
    totals = {"kept": 0, "new": 0, "removed": 0, "skipped": 0}

    @defer.inlineCallbacks
    def run() -> Any:
        for each in addresses:
            # One transaction for the folder list, one per folder, one for
            # the quota: the daemon's writes wait for one folder at most.
            # (Jobs return their counts: a retried transaction must not count twice.)
            counts = {"kept": 0, "new": 0, "removed": 0, "skipped": 0}
            folders, removed = yield store.runner.write(lambda txn, a=each: _reconcile_folders(store, txn, a))
            counts["removed"] += removed
            for fid in folders:
                done = yield store.runner.write(lambda txn, f=fid: _reindex_folder_job(store, txn, f))
                for key, value in done.items():
                    counts[key] += value
                yield store.runner.io(fill_fulltext, store, fid)
            yield store.runner.write(lambda txn, a=each: _recount_usage(store, txn, a))
            for key, value in counts.items():
                totals[key] += value
            store.notify_after(None, *folders)
            _log.info("reindexed {address}: {counts}", address=each, counts=counts)
        return totals

    return run()


def fill_fulltext(store: Any, fid: int) -> int:
    """Index the body text of the folder's messages the full-text index
    lacks (it is a cache: emptied, lost, or from before it existed); file
    reads, so off the reactor.  -> how many were added."""
    index: UidIndex = store.index
    with store.env.read() as txn:
        state = index.state(txn, fid)
        uids = [t[0] for t in index.iter_tuples(txn, fid)] if state is not None else []
    if state is None or state.name == names.RECYCLE:
        return 0
    missing = sorted(set(uids) - store.fulltext.indexed(fid))
    ops: list[tuple] = []
    for uid in missing:
        found = store.current_file(fid, uid)
        if found is None:
            continue
        try:
            with maildir.MessageFile.open(*found) as f:
                meta = parse_message(f.read())
        except OSError as e:
            _log.warn("reindex: cannot read {path} for the full-text index: {why}", path=found[0], why=e)
            continue
        ops.append(("add", rowid(fid, uid), meta.text, int(bool(meta.structure.get("text_cut")))))
        if len(ops) >= 256:
            store.fulltext.submit(ops)
            ops = []
    store.fulltext.submit(ops)
    return len(missing)


def _reconcile_folders(store: Any, txn: Any, address: str) -> tuple[list[int], int]:
    """Folders on disk <-> index entries; -> (folder ids to reindex, messages
    removed with folders whose directory is gone)."""
    removed = 0
    index: UidIndex = store.index
    root = names.user_root(store.mail_dir, address)
    now = store.runner.seconds()
    if index.usage(txn, address) is None:
        index.set_usage(txn, address, 0, 0)
    maildir.make_folder_dirs(root, subfolder=False)
    on_disk = {"INBOX": ""}
    for entry in os.listdir(root):
        if entry.startswith(DELETED_PREFIX):
            # A deleted folder whose removal was cut short.
            shutil.rmtree(os.path.join(root, entry), ignore_errors=True)
            continue
        name = names.folder_name_from_dirname(entry)
        if name is not None and os.path.isdir(os.path.join(root, entry, "cur")):
            on_disk[name] = entry
    known = dict(index.folder_ids(txn, address))
    specials = dict(names.DEFAULT_FOLDERS)
    for name, _use in names.DEFAULT_FOLDERS:
        if name not in on_disk:
            dirname = names.folder_dirname(name)
            maildir.make_folder_dirs(os.path.join(root, dirname), subfolder=name != "INBOX")
            on_disk[name] = dirname
    for name, dirname in on_disk.items():
        if name not in known:
            fid, _state = index.create_folder(txn, address, name, dirname, specials.get(name), now)
            index.set_subscribed(txn, address, name, True)
            known[name] = fid
    for name, fid in list(known.items()):
        state = index.state(txn, fid)
        if name not in on_disk:
            if state is not None:
                removed += state.messages
                index.drop_folder(txn, fid, state)
            del known[name]
        elif state is not None and state.dirname != on_disk[name]:
            state.dirname = on_disk[name]
            index.put_state(txn, fid, state)
    return list(known.values()), removed


def _reindex_folder_job(store: Any, txn: Any, fid: int) -> dict[str, int]:
    counts = {"kept": 0, "new": 0, "removed": 0, "skipped": 0}
    state = store.index.state(txn, fid)
    if state is None:
        return counts
    folder_dir = store.folder_dir(state)
    if not state.keywords:
        state.keywords = maildir.read_keywords_file(folder_dir)
    _reindex_folder(store, txn, fid, state, folder_dir, counts, store.runner.seconds(),
                    store.settings.limits.max_message_size)
    return counts


def _recount_usage(store: Any, txn: Any, address: str) -> None:
    total_bytes = total_messages = 0
    for _name, fid in store.index.folder_ids(txn, address):
        state = store.index.state(txn, fid)
        if state is not None:
            total_bytes += state.size
            total_messages += state.messages
    store.index.set_usage(txn, address, total_bytes, total_messages)


def _reindex_folder(store: Any, txn: Any, fid: int, state: Any, folder_dir: str, counts: dict[str, int],
                    now: float, max_size: int) -> None:
    index: UidIndex = store.index
    editor = index.editor(txn, fid, state)
    by_name = {t[5]: t for t in index.iter_tuples(txn, fid)}
    cur = os.path.join(folder_dir, "cur")
    seen: set[str] = set()
    adopt: list[tuple[str, str, bool]] = []  # (path, entry, keep its name) of files without a record
    groups, counts_skipped = _group_by_base(cur)
    counts["skipped"] += counts_skipped
    for base, entries in groups.items():
        record = by_name.get(base)
        current = maildir.info_letters(record[1], state.keywords) if record else None
        # Two names of one base: a flag change cut short by a crash (two
        # links of one file: keep one) or two different files (adopt the
        # other under a new name).
        entries.sort(key=lambda e: maildir.split_info(e)[1] != current)
        entry = entries[0]
        for extra in entries[1:]:
            try:
                same = os.path.samefile(os.path.join(cur, entry), os.path.join(cur, extra))
            except OSError:
                continue
            if same:
                maildir.unlink_quiet(os.path.join(cur, extra))
            else:
                adopt.append((os.path.join(cur, extra), extra, False))
        letters = maildir.split_info(entry)[1]
        if record is None:
            adopt.append((os.path.join(cur, entry), entry, True))
            continue
        seen.add(base)
        # The name carries the flags; keywords without a letter stay.
        flags = maildir.flags_from_letters(letters, state.keywords)
        lettered = set(state.keywords[: len(maildir.KEYWORD_LETTERS)]) | set(maildir.SYSTEM_FLAGS)
        flags |= {f for f in record[1] if f not in lettered}
        if frozenset(flags) != record[1]:
            record = editor.set_flags(record, frozenset(flags))
        wanted = maildir.info_letters(record[1], state.keywords)
        if wanted != letters:
            maildir.rename_entry(cur, base, letters, wanted)
        counts["kept"] += 1
    for base, record in by_name.items():
        if base not in seen:
            editor.remove(record, now)
            counts["removed"] += 1
    new = os.path.join(folder_dir, "new")
    try:
        adopt.extend((os.path.join(new, e), e, True) for e in sorted(os.listdir(new))
                     if not e.startswith("."))
    except OSError:
        pass
    for path, entry, keep_name in adopt:
        try:
            data, mtime = _read_candidate(path, max_size)
            base, letters, size, copied = _adopt(folder_dir, path, data, store.syncer, keep_name=keep_name)
        except (Skip, OSError) as e:
            _log.warn("reindex: skipping {path}: {why}", path=path, why=e)
            counts["skipped"] += 1
            continue
        if copied:
            maildir.unlink_quiet(path)
        flags = frozenset(maildir.flags_from_letters(maildir.split_info(entry)[1], state.keywords))
        meta = parse_meta(maildir.to_crlf(data))
        record = editor.add(flags, size, mtime, base, meta)
        place_keywords(state, folder_dir, base, flags, letters)
        if state.name == names.RECYCLE:
            index.put_recycle(txn, fid, record[0], (
                "INBOX", now, now + store.settings.limits.recycle_days * 86400.0, subject_of(meta)))
        counts["new"] += 1
    editor.flush()
    # Counters from the records themselves: a damaged state heals here.
    messages = unseen = size = 0
    for t in index.iter_tuples(txn, fid):
        messages += 1
        size += t[3]
        unseen += "\\Seen" not in t[1]
    state.messages, state.unseen, state.size = messages, unseen, size
    index.put_state(txn, fid, state)
