# -*- test-case-name: tests.store.test_delivery -*-
"""Durable append: the path every new message takes into a folder.

1. read the source, normalise bare LF to CRLF, parse it once for the index
   cache (xmail.message);
2. size, quota and send-save dedup checks from a read transaction;
3. tmp/ -> fsync -> link into cur/ with ":2,FLAGS" -> unlink tmp -> fsync
   cur/ (shared with concurrent writers);
   (1-3 in one trip to a file thread: each hop costs latency, and
   latency is what limits appends per second at a given concurrency)
4. (index writer) allocate the UID and commit the record, the counters and
   the quota usage in one transaction, re-checking quota there;
5. only then the Deferred fires: the caller may acknowledge.
On any failure after step 3 the file is removed again.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from xmail.store import maildir, names, quota
from xmail.store.index import FolderState, UidIndex, decode_headers, encode_meta, split_meta
from xmail.store.interfaces import (
    AppendResult,
    MessageMeta,
    MessageTooLarge,
    NoSuchFolder,
    StoreError,
)

_log = Logger()

SENT_DEDUP_SECONDS = 600.0  # interfaces.IFolder.append: "in the last 10 minutes"
_HEADER_END = re.compile(rb"\r?\n\r?\n")
_MESSAGE_ID = re.compile(rb"^message-id[ \t]*:[ \t]*((?:.|\r?\n[ \t])*)", re.IGNORECASE | re.MULTILINE)


@dataclass(slots=True)
class Prepared:
    data: bytes
    meta: bytes
    message_id: str | None


def parse_meta(data: bytes) -> bytes:
    """The encoded MessageMeta of data; an empty one if the parser fails."""
    try:
        from xmail.message import parse_message
    except ImportError:
        # The MIME parser lands separately; until then nothing is cached.
        return encode_meta(MessageMeta())
    try:
        meta = parse_message(data)
    except Exception:
        _log.failure("cannot parse message for the index cache")
        meta = MessageMeta()
    return encode_meta(meta)


def subject_of(meta: bytes | None) -> str:
    """The cached Subject of an encoded MessageMeta (Recycle listings)."""
    try:
        headers = decode_headers(split_meta(meta)[0])
    except Exception:
        return ""
    for key, value in headers.items():
        if key.lower() == "subject":
            return str(value)[:200]
    return ""


def normalize_message_id(value: str | None) -> str | None:
    if not value:
        return None
    value = "".join(value.split())
    if not value:
        return None
    if not value.startswith("<"):
        value = f"<{value}>"
    return value[:400]


def header_message_id(data: bytes) -> str | None:
    end = _HEADER_END.search(data)
    header = data[: end.start()] if end else data[:65536]
    match = _MESSAGE_ID.search(header)
    if not match:
        return None
    return normalize_message_id(match.group(1).decode("latin-1"))


def prepare(source: bytes | str, max_size: int) -> Prepared:
    """Runs on a file thread: read, normalise, parse."""
    if isinstance(source, str):
        if os.path.getsize(source) > max_size > 0:
            raise MessageTooLarge(f"message larger than {max_size} bytes")
        with open(source, "rb") as f:
            data = f.read()
    else:
        data = bytes(source)
    data = maildir.to_crlf(data)
    if max_size and len(data) > max_size:
        raise MessageTooLarge(f"message larger than {max_size} bytes")
    return Prepared(data, parse_meta(data), header_message_id(data))


def assign_keywords(index_state: FolderState, folder_dir: str, flags: frozenset[str]) -> str:
    """Give new keywords their Dovecot letter; -> the letters of flags."""
    keywords = index_state.keywords
    grew = False
    for flag in sorted(flags):
        if flag not in maildir.SYSTEM_FLAGS and flag not in keywords \
                and len(keywords) < len(maildir.KEYWORD_LETTERS):
            keywords.append(flag)
            grew = True
    if grew:
        try:
            maildir.write_keywords_file(folder_dir, keywords)
        except OSError as e:
            _log.warn("cannot write keywords file in {dir}: {error}", dir=folder_dir, error=e)
    return maildir.info_letters(flags, keywords)


def place_keywords(index_state: FolderState, folder_dir: str, base: str, flags: frozenset[str],
                   on_disk_letters: str) -> str:
    """assign_keywords, then rename the file to carry every flag.  Only for
    a file no reader knows of yet (before its record commits); a visible
    file is re-linked instead (MaildirFolder.set_flags).  -> the letters."""
    letters = assign_keywords(index_state, folder_dir, flags)
    if letters != on_disk_letters:
        if not maildir.rename_entry(os.path.join(folder_dir, "cur"), base, on_disk_letters, letters):
            _log.warn("message file {base} vanished in {dir}", base=base, dir=folder_dir)
    return letters


def system_letters(flags: frozenset[str]) -> str:
    return maildir.info_letters(flags, [])


BATCHED_APPEND_SIZE = 1 << 20  # larger messages are written on a pool thread of their own
TRACE_ALLOWANCE = 8192  # octets of trace fields the server may add to a message


def append(store: Any, address: str, fid: int, source: bytes | str, flags: frozenset[str],
           internaldate: float, *, sent_dedup: bool = False, remember_sent: bool = False,
           message_id: str | None = None, check_quota: bool = True) -> defer.Deferred[AppendResult]:
    """The durable append described in the module docstring."""
    index: UidIndex = store.index
    runner = store.runner
    max_size = store.settings.limits.max_message_size
    if max_size:
        # A message that met SIZE (RFC 1870) or APPENDLIMIT still fits after
        # the server adds its own Return-Path and Received fields.
        max_size += TRACE_ALLOWANCE
    if isinstance(source, bytes | bytearray | memoryview) and max_size and len(source) > max_size:
        return defer.fail(MessageTooLarge(f"message larger than {max_size} bytes"))
    limit = quota.limits(store.directory, store.settings, address)
    letters = system_letters(flags)

    def check_and_write(durable_now: bool) -> tuple[AppendResult | tuple[Prepared, str, str],
                                                    maildir.PendingFile | None]:
        """Read, check, write: in full (durable_now), or up to the fsync
        that the append thread shares with the rest of its batch."""
        prepared = prepare(source, max_size)
        with store.env.read() as txn:
            state = index.state(txn, fid)
            if state is None:
                raise NoSuchFolder("the folder no longer exists")
            if sent_dedup and prepared.message_id:
                known = index.sent_id(txn, address, prepared.message_id)
                if known is not None and known[0] == fid \
                        and runner.seconds() - known[2] <= SENT_DEDUP_SECONDS \
                        and index.get(txn, fid, known[1]) is not None:
                    return AppendResult(state.uidvalidity, known[1], deduplicated=True), None
            if check_quota:
                quota.check(index.usage(txn, address), limit, len(prepared.data), 1)
        folder_dir = store.folder_dir(state)
        if durable_now:
            base = maildir.deliver_file(folder_dir, prepared.data, letters, store.syncer)
            return (prepared, folder_dir, base), None
        base, pending = maildir.start_file(folder_dir, prepared.data, letters)
        return (prepared, folder_dir, base), pending

    def written(outcome: AppendResult | tuple[Prepared, str, str]) -> Any:
        if isinstance(outcome, AppendResult):
            return outcome
        return commit(*outcome)

    # The file of the message once it is in cur/, for the cleanup should its
    # index write fail (set on the thread that wrote it, read on the reactor).
    in_cur: list[str] = []

    def failed(failure: Any) -> Any:
        for path in in_cur:
            cleanup = runner.io(maildir.unlink_quiet, path)
            cleanup.addErrback(lambda f, p=path: _log.failure("cannot remove {path}", f, path=p))
        return failure

    def index_job(prepared: Prepared, folder_dir: str, base: str) -> Any:
        """The index write of step 4, for the writer thread."""
        size = len(prepared.data)
        now = runner.seconds()
        in_cur.append(os.path.join(folder_dir, "cur", maildir.entry_name(base, letters)))

        def job(txn: Any) -> AppendResult:
            state = index.state(txn, fid)
            if state is None:
                raise NoSuchFolder("the folder was deleted")
            known = index.uid_by_name(txn, fid, base)
            if known is not None:
                # Indexed meanwhile by reindex or a pickup: the same file.
                return AppendResult(state.uidvalidity, known)
            if check_quota:
                quota.check(index.usage(txn, address), limit, size, 1)
            editor = index.editor(txn, fid, state)
            record = editor.add(flags, size, internaldate, base, prepared.meta)
            place_keywords(state, folder_dir, base, flags, letters)
            if state.name == names.RECYCLE:
                # APPEND straight into Recycle: it expires like an expunge.
                index.put_recycle(txn, fid, record[0], (
                    "INBOX", now, now + store.settings.limits.recycle_days * 86400.0,
                    subject_of(prepared.meta)))
            sent_id = message_id or prepared.message_id
            if remember_sent and sent_id:
                index.put_sent_id(txn, address, sent_id, fid, record[0], now)
            editor.flush()
            return AppendResult(state.uidvalidity, record[0])

        return job

    def commit(prepared: Prepared, folder_dir: str, base: str) -> Any:
        d = runner.write(index_job(prepared, folder_dir, base))
        d.addErrback(failed)
        d.addCallback(store.notify_after, fid)
        return d

    def then(outcome: AppendResult | tuple[Prepared, str, str]) -> Any:
        """On the append thread, the file durable: the index job, or None
        for a deduplicated copy (outcome is the answer already)."""
        return None if isinstance(outcome, AppendResult) else index_job(*outcome)

    if isinstance(source, str) or len(source) > BATCHED_APPEND_SIZE:
        # Big messages take a pool thread each, not the append thread's
        # batch: reading and parsing them would hold up every small one.
        d = runner.io(lambda: check_and_write(True)[0])
        d.addCallback(written)
        return d
    d = runner.durable(lambda: check_and_write(False), store.syncer, then)
    d.addErrback(failed)
    d.addCallback(store.notify_after, fid)
    return d


def validate_flags(flags: Any) -> frozenset[str]:
    """Canonical flags to store: system flags in canonical case, keywords as
    given; \\Recent is never stored (RFC 3501 §2.3.2)."""
    if isinstance(flags, str):
        flags = flags.split()
    out = set()
    for flag in flags or ():
        if not isinstance(flag, str) or not flag:
            raise StoreError(f"invalid flag {flag!r}")
        canonical = maildir.canonical_flag(flag)
        if canonical.lower() == "\\recent":
            continue
        if canonical.startswith("\\") and canonical not in maildir.SYSTEM_FLAGS:
            raise StoreError(f"unknown system flag {flag!r}")
        if any(c in canonical for c in ' (){%*"]\r\n\0\t') or len(canonical) > 200:
            raise StoreError(f"invalid keyword {flag!r}")
        out.add(canonical)
    return frozenset(out)
