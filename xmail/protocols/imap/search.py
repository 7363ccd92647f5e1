# -*- test-case-name: tests.protocols.test_imap_search_model -*-
"""SEARCH evaluation over a folder's index records (RFC 3501 §6.4.4).

    run_search(expr, folder, records, *, recent_uids, now=None) -> list[int]

returns the UIDs of the matching records, ascending.  `records` is the
session's view of the folder, ordered by UID: a record's 1-based position is
its message sequence number (for SEQSET keys and for "*" in them); "*" in a
UID set is the last record's UID.  `recent_uids` are the session's \\Recent
messages.  `now` (default: time.time()) is only used by the RFC 5032 keys
OLDER / YOUNGER.  Pure, synchronous, no Twisted; the server runs it on the
reactor for flag-only searches and may defer it to a thread otherwise
(`needs_message_data(expr)` says which).

Cost model: keys are compiled once into predicates; inside AND / OR the
cheap ones run first, so a message is only looked at further when the
record alone does not decide.  Levels:

  0  record only: flags, \\Recent, sizes, INTERNALDATE, UID, sequence numbers,
     MODSEQ, OLDER/YOUNGER — never touches the message metadata.
  1  cached decoded headers (From, To, Cc, Bcc, Subject and the sent date),
     from the first of these the folder offers:
       `folder.headers_many(uids) -> Iterable[(uid, dict[str, str])]`
           (optional bulk accessor: one read transaction for a batch of
           following records; missing UIDs are left out),
       `folder.headers(uid) -> dict[str, str]` (optional, raises NoSuchMessage),
       `folder.meta(uid).headers` (IFolder).
  2  the body text: the store's full-text index when the folder offers
     `folder.body_search(needle, uids) -> (matching, undecided)` (one query
     per needle and search, xmail.store.fulltext), else the digest in
     `MessageMeta.text` (folders that keep it, through the optional bulk
     accessor `folder.metas_many(uids)` or `folder.meta(uid)`).
  3  the message file: HEADER for fields that are not cached, TEXT's header
     part, BODY/TEXT for messages the full-text index leaves undecided or
     whose digest was cut (`structure["text_cut"]`); the text read is
     handed back through `folder.note_body_text(uid, text, cut)` if offered.

Matching rules:
- Strings match as substrings after Unicode case folding (str.casefold), on
  decoded text: RFC 2047 words in headers, Content-Transfer-Encoding and
  charsets in bodies (RFC 3501 §6.4.4 "case-insensitive substring";
  CHARSET decoding of the search string is grammar.py's job).
- BEFORE / ON / SINCE compare the INTERNALDATE's calendar date in UTC (the
  server's time zone for this purpose is UTC; RFC 3501 leaves it to us).
- SENTBEFORE / SENTON / SENTSINCE compare the Date field's calendar date in
  the field's own zone ("disregarding time and timezone"); a message without
  a valid Date field uses its INTERNALDATE's UTC date instead.
- HEADER name "" matches every message having that field; FROM/TO/... ""
  likewise need the field to exist.
- KEYWORD / UNKEYWORD compare case-insensitively, as clients expect of
  flag atoms (an exact match is tried first).
- A message expunged while the search runs (NoSuchMessage) does not match.
"""

from __future__ import annotations

import time
from bisect import bisect_right
from collections.abc import Callable, Iterable
from datetime import date, datetime
from typing import Any

from xmail.message import (
    TEXT_DIGEST_LIMIT,
    decode_header_bytes,
    decode_words,
    extract_text,
    parse_message,
    scan_header_section,
    searchable,
)
from xmail.protocols.imap.model import (
    STAR,
    SearchAnd,
    SearchExpr,
    SearchKey,
    SearchNot,
    SearchOr,
    SeqSet,
)
from xmail.store.interfaces import MessageMeta, MessageRecord, NoSuchMessage

__all__ = ["SearchError", "needs_message_data", "run_search", "SeqSetMatcher"]

_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
_DAY = 86400
_MAX_HEADER_READ = 1 << 20  # bytes of a header block read for HEADER / TEXT
_HEADER_BATCH = 256  # records whose headers one folder.headers_many call reads
_GONE = object()  # marks a UID a bulk read asked for and did not get
_META_BATCH = 32  # the same for folder.metas_many; a meta may hold 256 KiB of text
_MAX_FILE_TEXT = 64 << 20  # bytes of a message read for BODY / TEXT when the digest was cut
_MAX_SEARCH_TEXT = 16 << 20  # characters of body text BODY / TEXT look at (linear scan, bounded)

# Cached in MessageMeta.headers by xmail.message (lower-case names).
_CACHED_FIELDS = frozenset(("from", "to", "cc", "bcc", "subject", "date", "message-id",
                            "in-reply-to", "references", "reply-to", "sender"))
_FLAG_KEYS = {
    "ANSWERED": ("\\Answered", True), "UNANSWERED": ("\\Answered", False),
    "DELETED": ("\\Deleted", True), "UNDELETED": ("\\Deleted", False),
    "DRAFT": ("\\Draft", True), "UNDRAFT": ("\\Draft", False),
    "FLAGGED": ("\\Flagged", True), "UNFLAGGED": ("\\Flagged", False),
    "SEEN": ("\\Seen", True), "UNSEEN": ("\\Seen", False),
}
_ADDRESS_KEYS = {"FROM": "from", "TO": "to", "CC": "cc", "BCC": "bcc"}


class SearchError(ValueError):
    """A key the evaluator does not know or with wrong arguments (-> BAD)."""


Predicate = Callable[[MessageRecord, int, "_MessageData"], bool]


def run_search(expr: SearchExpr, folder: Any, records: list[MessageRecord], *,
               recent_uids: set[int] | frozenset[int], now: float | None = None) -> list[int]:
    """UIDs (ascending) of the records matching expr; see the module docstring."""
    compiler = _Compiler(records, recent_uids, time.time() if now is None else now)
    predicate, _cost = compiler.compile(expr)
    data = _MessageData(folder, records)
    matches = []
    for seq, record in enumerate(records, 1):
        try:
            if predicate(record, seq, data):
                matches.append(record.uid)
        except NoSuchMessage:
            continue
    return matches


def needs_message_data(expr: SearchExpr) -> bool:
    """True when evaluating expr may read metadata or files (not just records)."""
    if isinstance(expr, SearchKey):
        return expr.name in _ADDRESS_KEYS or expr.name in (
            "SUBJECT", "HEADER", "BODY", "TEXT", "SENTBEFORE", "SENTON", "SENTSINCE")
    if isinstance(expr, SearchNot):
        return needs_message_data(expr.key)
    if isinstance(expr, SearchOr):
        return needs_message_data(expr.left) or needs_message_data(expr.right)
    return any(needs_message_data(key) for key in expr.keys)


# --- sets ------------------------------------------------------------------------------


class SeqSetMatcher:
    """Membership in a sequence set with "*" resolved (RFC 3501 §9 seq-range:
    "4:2" equals "2:4"; "*" is the largest number in use)."""

    __slots__ = ("_lows", "_highs")

    def __init__(self, seqset: SeqSet, star: int):
        spans = []
        for r in seqset.ranges:
            low = star if r.low == STAR else r.low
            high = star if r.high == STAR else r.high
            if low > high:
                low, high = high, low
            spans.append((low, high))
        spans.sort()
        merged: list[list[int]] = []
        for low, high in spans:
            if merged and low <= merged[-1][1] + 1:
                merged[-1][1] = max(merged[-1][1], high)
            else:
                merged.append([low, high])
        self._lows = [low for low, _high in merged]
        self._highs = [high for _low, high in merged]

    @property
    def lows(self) -> list[int]:
        return self._lows

    @property
    def highs(self) -> list[int]:
        return self._highs

    def __contains__(self, number: int) -> bool:
        i = bisect_right(self._lows, number) - 1
        return i >= 0 and number <= self._highs[i]


# --- message data, loaded lazily and once per message ------------------------------------------


class _MessageData:
    """What the predicates may need beyond the record, for the current message."""

    def __init__(self, folder: Any, records: list[MessageRecord]):
        self.folder = folder
        self._headers_of = getattr(folder, "headers", None)
        self._headers_many = getattr(folder, "headers_many", None)
        self._metas_many = getattr(folder, "metas_many", None)
        self._body_search = getattr(folder, "body_search", None)
        self._note_body_text = getattr(folder, "note_body_text", None)
        self._body_results: dict[str, tuple[set[int], set[int]]] = {}  # needle -> body_search's answer
        self._records = records
        self._position: dict[int, int] = {}  # uid -> index in records, for bulk reads
        self._prefetched_headers: dict[int, dict[str, str]] = {}
        self._prefetched_metas: dict[int, MessageMeta] = {}
        self.uid = -1
        self._headers: dict[str, str] | None = None
        self._meta: MessageMeta | None = None
        self._header_block: bytes | None = None
        self._full_text: str | None = None

    def _switch(self, uid: int) -> None:
        if uid != self.uid:
            self.uid = uid
            self._headers = None
            self._meta = None
            self._header_block = None
            self._full_text = None

    def headers(self, uid: int) -> dict[str, str]:
        self._switch(uid)
        if self._headers is None:
            if self._headers_many is not None:
                self._headers = self._bulk(uid, self._headers_many, self._prefetched_headers,
                                           _HEADER_BATCH)
            elif self._headers_of is not None:
                self._headers = self._headers_of(uid)
            else:
                self._headers = self.meta(uid).headers
        return self._headers

    def _bulk(self, uid: int, read_many: Callable[[list[int]], Any], prefetched: dict[int, Any],
              batch_size: int) -> Any:
        """One item through a bulk accessor, reading a batch of the following
        records at a time (one index read transaction per batch, not per
        message); prefetched holds the rest of the batch."""
        item = prefetched.pop(uid, None)
        if item is _GONE:
            raise NoSuchMessage(f"no message with UID {uid}")
        if item is not None:
            return item
        if not self._position:
            self._position = {r.uid: i for i, r in enumerate(self._records)}
        start = self._position.get(uid)
        batch = [uid] if start is None else [r.uid for r in self._records[start:start + batch_size]]
        prefetched.clear()
        prefetched.update(read_many(batch))
        for missing in batch:
            prefetched.setdefault(missing, _GONE)  # expunged meanwhile: no second look
        item = prefetched.pop(uid)
        if item is _GONE:
            raise NoSuchMessage(f"no message with UID {uid}")
        return item

    def meta(self, uid: int) -> MessageMeta:
        self._switch(uid)
        if self._meta is None:
            if self._metas_many is not None:
                meta = self._bulk(uid, self._metas_many, self._prefetched_metas, _META_BATCH)
            else:
                meta = self.folder.meta(uid)
            if not meta.structure:  # not cached (yet): parse the file now
                with self.folder.open_message(uid) as file:
                    meta = parse_message(file.read(_MAX_FILE_TEXT))
            self._meta = meta
        return self._meta

    def header_block(self, uid: int) -> bytes:
        """The top-level header block from the file (blank line included)."""
        self._switch(uid)
        if self._header_block is None:
            structure = self.meta(uid).structure
            body = structure.get("body") if structure else None
            with self.folder.open_message(uid) as file:
                if body is not None:
                    self._header_block = file.read(min(body["bs"], _MAX_HEADER_READ))
                else:
                    head = file.read(_MAX_HEADER_READ)
                    end = head.find(b"\r\n\r\n")
                    self._header_block = head if end < 0 else head[:end + 4]
        return self._header_block

    def body_contains(self, uid: int, needle: str) -> bool:
        """needle (case-folded) in the body text: the store's full-text index
        decides when it can (one query per needle for the whole search),
        the file otherwise."""
        if self._body_search is not None:
            found = self._body_results.get(needle)
            if found is None:
                found = self._body_search(needle, [r.uid for r in self._records])
                self._body_results[needle] = found
            matching, undecided = found
            if uid in matching:
                return True
            if uid not in undecided:
                return False
            return needle in self._file_text(uid)
        return needle in self.body_text(uid)

    def _file_text(self, uid: int) -> str:
        self._switch(uid)
        if self._full_text is None:
            with self.folder.open_message(uid) as file:
                text = extract_text(file.read(_MAX_FILE_TEXT))
            self._full_text = text
            if self._note_body_text is not None and len(text) <= TEXT_DIGEST_LIMIT:
                self._note_body_text(uid, text, False)  # complete: the index decides next time
        return self._full_text

    def body_text(self, uid: int) -> str:
        """The case-folded body digest, from the file when the cache is short."""
        self._switch(uid)
        if self._full_text is None:
            meta = self.meta(uid)
            if meta.structure and not meta.structure.get("text_cut"):
                self._full_text = meta.text
            else:
                with self.folder.open_message(uid) as file:
                    self._full_text = extract_text(file.read(_MAX_FILE_TEXT), _MAX_SEARCH_TEXT)
        return self._full_text


def _field_values(block: bytes, name: str) -> list[str]:
    """Decoded, case-folded values of every occurrence of a field, read by
    the one header reader (xmail.message.headers)."""
    return [decode_words(value).casefold()
            for _key, value in scan_header_section(block, frozenset((name,))).fields]


def _whole_header_text(block: bytes) -> str:
    unfolded = decode_header_bytes(block).replace("\r\n ", " ").replace("\r\n\t", " ")
    return decode_words(unfolded).casefold()


# --- compilation ---------------------------------------------------------------------------------


def _day(timestamp: float) -> int:
    return int(timestamp // _DAY)


def _date_arg(key: SearchKey) -> date:
    value = key.args[0] if key.args else None
    if isinstance(value, datetime):
        return value.date()
    if not isinstance(value, date):
        raise SearchError(f"{key.name} needs a date")
    return value


def _str_arg(key: SearchKey, index: int = 0) -> str:
    value = key.args[index] if len(key.args) > index else None
    if not isinstance(value, str):
        raise SearchError(f"{key.name} needs a string")
    return value


def _int_arg(key: SearchKey) -> int:
    value = key.args[-1] if key.args else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise SearchError(f"{key.name} needs a number")
    return value


class _Compiler:
    def __init__(self, records: list[MessageRecord], recent_uids: Iterable[int], now: float):
        self.records = records
        self.recent = recent_uids if isinstance(recent_uids, (set, frozenset)) else set(recent_uids)
        self.now = now

    def compile(self, expr: SearchExpr) -> tuple[Predicate, int]:
        if isinstance(expr, SearchKey):
            return self.key(expr)
        if isinstance(expr, SearchNot):
            inner, cost = self.compile(expr.key)
            return (lambda r, s, d: not inner(r, s, d)), cost
        if isinstance(expr, SearchOr):
            compiled = sorted((self.compile(expr.left), self.compile(expr.right)), key=lambda c: c[1])
            (first, c1), (second, c2) = compiled
            return (lambda r, s, d: first(r, s, d) or second(r, s, d)), max(c1, c2)
        if isinstance(expr, SearchAnd):
            compiled = sorted((self.compile(k) for k in expr.keys), key=lambda c: c[1])
            preds = [p for p, _c in compiled]
            cost = max((c for _p, c in compiled), default=0)
            if not preds:
                return (lambda r, s, d: True), 0
            if len(preds) == 1:
                return preds[0], cost
            if len(preds) == 2:
                a, b = preds
                return (lambda r, s, d: a(r, s, d) and b(r, s, d)), cost
            return (lambda r, s, d: all(p(r, s, d) for p in preds)), cost
        raise SearchError(f"not a search expression: {expr!r}")

    def key(self, key: SearchKey) -> tuple[Predicate, int]:
        name = key.name
        if name in _FLAG_KEYS:
            flag, wanted = _FLAG_KEYS[name]
            if wanted:
                return (lambda r, s, d: flag in r.flags), 0
            return (lambda r, s, d: flag not in r.flags), 0
        recent = self.recent
        if name == "ALL":
            return (lambda r, s, d: True), 0
        if name == "RECENT":
            return (lambda r, s, d: r.uid in recent), 0
        if name == "OLD":
            return (lambda r, s, d: r.uid not in recent), 0
        if name == "NEW":  # RFC 3501 §6.4.4: RECENT UNSEEN
            return (lambda r, s, d: r.uid in recent and "\\Seen" not in r.flags), 0
        if name in ("KEYWORD", "UNKEYWORD"):
            keyword = _str_arg(key)
            folded = keyword.lower()

            def has_keyword(r: MessageRecord, s: int, d: _MessageData) -> bool:
                flags = r.flags
                return keyword in flags or any(f.lower() == folded for f in flags)

            if name == "KEYWORD":
                return has_keyword, 0
            return (lambda r, s, d: not has_keyword(r, s, d)), 0
        if name == "LARGER":
            size = _int_arg(key)
            return (lambda r, s, d: r.size > size), 0
        if name == "SMALLER":
            size = _int_arg(key)
            return (lambda r, s, d: r.size < size), 0
        if name in ("BEFORE", "ON", "SINCE"):
            day = _date_arg(key).toordinal() - _EPOCH_ORDINAL
            if name == "BEFORE":
                return (lambda r, s, d: _day(r.internaldate) < day), 0
            if name == "ON":
                return (lambda r, s, d: _day(r.internaldate) == day), 0
            return (lambda r, s, d: _day(r.internaldate) >= day), 0
        if name in ("OLDER", "YOUNGER"):  # RFC 5032 WITHIN
            limit = self.now - _int_arg(key)
            if name == "OLDER":
                return (lambda r, s, d: r.internaldate <= limit), 0
            return (lambda r, s, d: r.internaldate >= limit), 0
        if name == "UID":
            uids = key.args[0] if key.args else None
            if not isinstance(uids, SeqSet):
                raise SearchError("UID needs a sequence set")
            matcher = SeqSetMatcher(uids, self.records[-1].uid if self.records else 0)
            return (lambda r, s, d: r.uid in matcher), 0
        if name == "SEQSET":
            seqs = key.args[0] if key.args else None
            if not isinstance(seqs, SeqSet):
                raise SearchError("SEQSET needs a sequence set")
            matcher = SeqSetMatcher(seqs, len(self.records))
            return (lambda r, s, d: s in matcher), 0
        if name == "MODSEQ":  # RFC 7162 §3.1.5: the last argument is the mod-sequence
            modseq = _int_arg(key)
            return (lambda r, s, d: r.modseq >= modseq), 0
        if name in ("SENTBEFORE", "SENTON", "SENTSINCE"):
            return self.sent_date(name, _date_arg(key)), 1
        if name == "SUBJECT":
            return self.header("subject", _str_arg(key))
        if name in _ADDRESS_KEYS:
            return self.address(_ADDRESS_KEYS[name], _str_arg(key)), 1
        if name == "HEADER":
            if len(key.args) != 2:
                raise SearchError("HEADER needs a field name and a string")
            return self.header(_str_arg(key, 0).lower(), _str_arg(key, 1))
        if name == "BODY":
            needle = _str_arg(key).casefold()
            return (lambda r, s, d: d.body_contains(r.uid, needle)), 2
        if name == "TEXT":
            return self.text(_str_arg(key).casefold()), 2
        raise SearchError(f"unknown search key {name}")

    def sent_date(self, name: str, when: date) -> Predicate:
        wanted = when.isoformat()

        def sent_day(r: MessageRecord, d: _MessageData) -> str:
            day = d.headers(r.uid).get(":sent-day")
            if day is None:
                return date.fromordinal(_day(r.internaldate) + _EPOCH_ORDINAL).isoformat()
            return day

        # ISO dates compare as strings.
        if name == "SENTBEFORE":
            return lambda r, s, d: sent_day(r, d) < wanted
        if name == "SENTON":
            return lambda r, s, d: sent_day(r, d) == wanted
        return lambda r, s, d: sent_day(r, d) >= wanted

    def address(self, field: str, needle: str) -> Predicate:
        """FROM / TO / CC / BCC match the addresses as parsed by the one
        address grammar (xmail.message.address): display names and
        local@domain, never comments or quoting (issue 15), so that
        `"x" <a@b.c> (comment z)` matches "a@b" and "x" but not "comment".
        An empty string matches every message that has the field."""
        folded = needle.casefold()

        def matches(r: MessageRecord, s: int, d: _MessageData) -> bool:
            value = d.headers(r.uid).get(field)
            if value is None:
                return False
            return not folded or folded in searchable(value)

        return matches

    def header(self, field: str, needle: str) -> tuple[Predicate, int]:
        folded = needle.casefold()
        if field in _CACHED_FIELDS:
            def cached(r: MessageRecord, s: int, d: _MessageData) -> bool:
                value = d.headers(r.uid).get(field)
                return value is not None and folded in value.casefold()

            return cached, 1

        def from_file(r: MessageRecord, s: int, d: _MessageData) -> bool:
            return any(folded in value for value in _field_values(d.header_block(r.uid), field))

        return from_file, 3

    def text(self, folded: str) -> Predicate:
        """RFC 3501 TEXT: "in the header or body of the message"."""

        def matches(r: MessageRecord, s: int, d: _MessageData) -> bool:
            uid = r.uid
            headers = d.headers(uid)
            if any(folded in value.casefold() for key, value in headers.items() if key[0] != ":"):
                return True
            if d.body_contains(uid, folded):
                return True
            return folded in _whole_header_text(d.header_block(uid))

        return matches
