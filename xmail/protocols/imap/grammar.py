# -*- test-case-name: tests.protocols.test_imap_grammar -*-
"""Tokens -> typed commands (RFC 3501 §6 and §9, and the extensions we advertise).

`parse_command(items)` takes the token tree of one command (see tokenizer.py)
and returns a `Request`: tag, upper-cased command name, whether it was a UID
command, and the arguments as typed values (model.py's SeqSet, FetchAtt,
SearchKey tree; str mailbox names decoded from modified UTF-7).

Errors: `GrammarError` is a syntax error (the session answers BAD);
`BadCharset` is a SEARCH with a charset we do not know (NO [BADCHARSET],
RFC 3501 §6.4.4).
"""

from __future__ import annotations

import calendar
import contextvars
import datetime
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xmail.protocols.imap import sort as sortmod
from xmail.protocols.imap import thread as threadmod
from xmail.protocols.imap.model import (
    STAR,
    FetchAtt,
    SearchAnd,
    SearchExpr,
    SearchKey,
    SearchNot,
    SearchOr,
    Section,
    SeqRange,
    SeqSet,
)
from xmail.protocols.imap.response import decode_mailbox
from xmail.protocols.imap.tokenizer import Atom, LiteralString, QuotedString, SpooledLiteral, String, tag_of
from xmail.protocols.skeleton import BadSyntax


class GrammarError(BadSyntax):
    """A syntax error: tagged BAD (the skeleton's BadSyntax)."""


class BadCharset(Exception):
    """SEARCH CHARSET we do not support (NO [BADCHARSET (...)])."""


SUPPORTED_CHARSETS = ("UTF-8", "US-ASCII")

# --- typed arguments ---------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Request:
    tag: bytes
    name: str  # "FETCH", "UID" is folded into `uid`
    uid: bool = False
    args: Any = None


@dataclass(frozen=True, slots=True)
class FetchArgs:
    seqset: SeqSet
    atts: tuple[FetchAtt, ...]
    changed_since: int | None = None  # RFC 7162 §3.1.4.1 CHANGEDSINCE
    vanished: bool = False  # RFC 7162 §3.2.6 VANISHED (UID FETCH only)


@dataclass(frozen=True, slots=True)
class StoreArgs:
    seqset: SeqSet
    mode: str  # "set" | "add" | "remove"
    silent: bool
    flags: tuple[str, ...]
    unchanged_since: int | None = None


@dataclass(frozen=True, slots=True)
class SearchArgs:
    key: SearchAnd
    charset: str = "UTF-8"
    # RFC 4731 ESEARCH: None = classic SEARCH response; else the set of
    # MIN/MAX/ALL/COUNT (empty RETURN () means ALL), SAVE (RFC 5182), PARTIAL.
    returns: frozenset[str] | None = None
    partial: tuple[int, int] | None = None  # RFC 9394 RETURN (PARTIAL low:high)


@dataclass(frozen=True, slots=True)
class CopyArgs:
    seqset: SeqSet
    mailbox: str


@dataclass(frozen=True, slots=True)
class CatenatePart:
    """RFC 4469 §5 cat-part: ("TEXT", literal data) or ("URL", IMAP URL)."""

    kind: str
    value: bytes | SpooledLiteral | str


@dataclass(frozen=True, slots=True)
class AppendMessage:
    """One append-message (RFC 3502 §6): its data is the message, or the
    CATENATE parts it is made of (RFC 4469)."""

    flags: tuple[str, ...]
    internaldate: float | None
    message: bytes | SpooledLiteral | tuple[CatenatePart, ...]


@dataclass(frozen=True, slots=True)
class AppendArgs:
    mailbox: str
    flags: tuple[str, ...]
    internaldate: float | None
    message: bytes | SpooledLiteral | tuple[CatenatePart, ...]  # large ones arrive spooled
    # RFC 3502 MULTIAPPEND: the messages after the first.
    more: tuple[AppendMessage, ...] = field(default=(), compare=False)

    def messages(self) -> list[AppendMessage]:
        return [AppendMessage(self.flags, self.internaldate, self.message), *self.more]


@dataclass(frozen=True, slots=True)
class ListArgs:
    reference: str
    patterns: tuple[str, ...]
    selection: frozenset[str] = frozenset()  # RFC 5258 selection options
    returns: frozenset[str] = frozenset()  # RFC 5258 return options
    status_items: tuple[str, ...] = ()  # RFC 5819 RETURN (STATUS (...))
    extended: bool = False  # any RFC 5258 syntax used
    lsub: bool = False


@dataclass(frozen=True, slots=True)
class QresyncParams:
    """RFC 7162 §3.2.5: SELECT box (QRESYNC (uidvalidity modseq
    [known-uids [(known-sequence-set known-uid-set)]]))."""

    uidvalidity: int
    modseq: int
    known_uids: SeqSet | None = None
    seq_match: tuple[SeqSet, SeqSet] | None = None


class SelectArgs(str):
    """SELECT / EXAMINE: the mailbox name (the str itself) and the RFC 7162
    select parameters (CONDSTORE), (QRESYNC (...))."""

    condstore: bool = False
    qresync: QresyncParams | None = None

    @classmethod
    def make(cls, name: str, condstore: bool = False, qresync: QresyncParams | None = None
             ) -> SelectArgs:
        args = cls(name)
        args.condstore = condstore or qresync is not None
        args.qresync = qresync
        return args


@dataclass(frozen=True, slots=True)
class StatusArgs:
    mailbox: str
    items: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class CreateArgs:
    mailbox: str
    special_use: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class AuthenticateArgs:
    mechanism: str
    initial_response: bytes | None = None  # RFC 4959: "=" is b""


@dataclass(frozen=True, slots=True)
class IdArgs:
    params: dict[str, str | None] | None = field(default=None)


# --- a cursor over tokens -------------------------------------------------------


class _Cursor:
    def __init__(self, items: list[Any]):
        self.items = items
        self.pos = 0

    def more(self) -> bool:
        return self.pos < len(self.items)

    def peek(self) -> Any:
        return self.items[self.pos] if self.pos < len(self.items) else None

    def take(self, what: str) -> Any:
        if self.pos >= len(self.items):
            raise GrammarError(f"missing {what}")
        item = self.items[self.pos]
        self.pos += 1
        return item

    def end(self) -> None:
        if self.pos < len(self.items):
            raise GrammarError("unexpected extra arguments")

    def atom(self, what: str) -> str:
        item = self.take(what)
        if not isinstance(item, Atom):
            raise GrammarError(f"{what} must be an atom")
        return item.decode("ascii", "replace")

    def astring(self, what: str) -> bytes:
        # RFC 3501 §9: astring = 1*ASTRING-CHAR / string
        item = self.take(what)
        if isinstance(item, (Atom, String)):
            return bytes(item)
        raise GrammarError(f"{what} must be a string")

    def string(self, what: str) -> bytes:
        item = self.take(what)
        if isinstance(item, String):
            return bytes(item)
        raise GrammarError(f"{what} must be a quoted string or literal")

    def list(self, what: str) -> list[Any]:
        item = self.take(what)
        if not isinstance(item, list):
            raise GrammarError(f"{what} must be a parenthesised list")
        return item

    def mailbox(self) -> str:
        return mailbox_name(self.astring("mailbox name"))


class UnusableMailboxName(str):
    """A mailbox name that is a valid IMAP string but not valid modified
    UTF-7 (RFC 3501 §5.1.3).  That is not a syntax error (BAD is for syntax,
    §7.1.5): no folder has such a name, so commands answer NO and LIST finds
    nothing.  Its text starts with NUL, which the store refuses in every
    folder name and which no folder name contains, so even a command that
    forgot to check gets a NO and a pattern matches nothing."""

    @classmethod
    def of(cls, raw: bytes) -> UnusableMailboxName:
        return cls("\0" + raw.decode("utf-8", "replace"))

    @staticmethod
    def marks(name: str) -> bool:
        """Also true once the name was copied into another str (SelectArgs)."""
        return name[:1] == "\0"


# RFC 9051 §5.1: after ENABLE IMAP4rev2 names are UTF-8, not modified UTF-7.
# Set by parse_command for the one (synchronous) parse it does.
_UTF8_NAMES: contextvars.ContextVar[bool] = contextvars.ContextVar("utf8_names", default=False)


def mailbox_name(raw: bytes) -> str:
    """RFC 3501 §5.1: INBOX is case-insensitive; the rest is modified UTF-7
    (UTF-8 for an IMAP4rev2 session)."""
    try:
        name = decode_mailbox(raw, _UTF8_NAMES.get())
    except (UnicodeDecodeError, ValueError):
        return UnusableMailboxName.of(raw)
    if name.upper() == "INBOX":
        return "INBOX"
    if name[:6].upper() == "INBOX/":
        return "INBOX" + name[5:]
    return name


# --- sequence sets (RFC 3501 §9 sequence-set) -----------------------------------

_SEQ_NUMBER = r"(?:[1-9][0-9]{0,9}|\*)"
_SEQ_RANGE = re.compile(rf"({_SEQ_NUMBER})(?::({_SEQ_NUMBER}))?\Z")
_MAX_NUMBER = 4294967295  # nz-number is a 32-bit unsigned value


def parse_seqset(text: str) -> SeqSet:
    if not text:
        raise GrammarError("empty sequence set")
    ranges = []
    for part in text.split(","):
        m = _SEQ_RANGE.match(part)
        if m is None:
            raise GrammarError(f"invalid sequence set {text[:40]!r}")
        low = _seq_number(m.group(1))
        high = _seq_number(m.group(2)) if m.group(2) else low
        ranges.append(SeqRange(low, high))
    return SeqSet(tuple(ranges))


def _seq_number(text: str) -> int:
    if text == "*":
        return STAR
    n = int(text)
    if n > _MAX_NUMBER:
        raise GrammarError("sequence number out of range")
    return n


def format_seqset(seqset: SeqSet) -> str:
    def one(n: int) -> str:
        return "*" if n == STAR else str(n)

    return ",".join(
        one(r.low) if r.low == r.high else f"{one(r.low)}:{one(r.high)}" for r in seqset.ranges
    )


def compress_numbers(numbers: Any) -> str:
    """Sorted numbers -> a compact sequence set ("1:3,7"), for UIDPLUS/ESEARCH."""
    out = []
    start = prev = None
    for n in sorted(numbers):
        if start is None:
            start = prev = n
        elif n == prev + 1:
            prev = n
        elif n == prev:
            continue
        else:
            out.append(str(start) if start == prev else f"{start}:{prev}")
            start = prev = n
    if start is not None:
        out.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(out)


SAVED_RESULT = SeqSet((), saved=True)  # "$", resolved by searchres.expand


def _seqset(cur: _Cursor) -> SeqSet:
    item = cur.take("sequence set")
    if not isinstance(item, Atom):
        raise GrammarError("sequence set must be an atom")
    if item == b"$":
        return SAVED_RESULT  # RFC 5182 §3: sequence-set =/ seq-last-command
    return parse_seqset(item.decode("ascii", "replace"))


# --- flags (RFC 3501 §2.3.2) ------------------------------------------------------

SYSTEM_FLAGS = {f.upper(): f for f in ("\\Seen", "\\Answered", "\\Flagged", "\\Deleted", "\\Draft")}
_KEYWORD = re.compile(rb"[!#$&'+-.0-9:-Z^-z|~]+\Z")  # atom-chars without "\" "*" "%" "]"


def parse_flag(item: Any, *, allow_recent: bool = False) -> str:
    if not isinstance(item, Atom):
        raise GrammarError("flag must be an atom")
    raw = bytes(item)
    if raw.startswith(b"\\"):
        canonical = SYSTEM_FLAGS.get(raw.decode("ascii", "replace").upper())
        if canonical is not None:
            return canonical
        if allow_recent and raw.upper() == b"\\RECENT":
            return "\\Recent"
        raise GrammarError(f"unknown system flag {raw.decode('ascii', 'replace')}")
    if not _KEYWORD.match(raw):
        raise GrammarError("invalid keyword")
    return raw.decode("ascii")


def _flag_list(items: list[Any]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for item in items:
        seen[parse_flag(item)] = None
    return tuple(seen)


# --- dates (RFC 3501 §9 date, date-time) ------------------------------------------

_MONTHS = {m.upper(): i for i, m in enumerate(calendar.month_abbr) if m}
_DATE = re.compile(r"(\d{1,2})-([A-Za-z]{3})-(\d{4})\Z")
_DATE_TIME = re.compile(r"([ \d]\d)-([A-Za-z]{3})-(\d{4}) (\d\d):(\d\d):(\d\d) ([+-])(\d\d)(\d\d)\Z")


def parse_date(text: str) -> datetime.date:
    m = _DATE.match(text)
    month = _MONTHS.get(m.group(2).upper()) if m else None
    if m is None or month is None:
        raise GrammarError(f"invalid date {text[:30]!r}")
    try:
        return datetime.date(int(m.group(3)), month, int(m.group(1)))
    except ValueError:
        raise GrammarError(f"invalid date {text[:30]!r}") from None


def parse_date_time(text: str) -> float:
    """APPEND date-time -> seconds since the epoch."""
    m = _DATE_TIME.match(text)
    month = _MONTHS.get(m.group(2).upper()) if m else None
    if m is None or month is None:
        raise GrammarError(f"invalid date-time {text[:40]!r}")
    try:
        offset = datetime.timedelta(hours=int(m.group(8)), minutes=int(m.group(9)))
        if m.group(7) == "-":
            offset = -offset
        when = datetime.datetime(
            int(m.group(3)), month, int(m.group(1).strip()), int(m.group(4)), int(m.group(5)),
            int(m.group(6)), tzinfo=datetime.timezone(offset),
        )
    except ValueError:
        raise GrammarError(f"invalid date-time {text[:40]!r}") from None
    return when.timestamp()


def _date(cur: _Cursor) -> datetime.date:
    return parse_date(cur.astring("date").decode("ascii", "replace"))


def _number(cur: _Cursor, what: str) -> int:
    text = cur.atom(what)
    if not text.isdigit() or len(text) > 20:
        raise GrammarError(f"{what} must be a number")
    return int(text)


# --- FETCH (RFC 3501 §6.4.5) ----------------------------------------------------------

_FETCH_MACROS = {
    "ALL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE"),
    "FAST": ("FLAGS", "INTERNALDATE", "RFC822.SIZE"),
    "FULL": ("FLAGS", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"),
}
_SIMPLE_ATTS = {
    "FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY", "BODYSTRUCTURE",
    "RFC822", "RFC822.HEADER", "RFC822.TEXT", "MODSEQ",  # RFC 7162 §3.1.4
}
_BODY_ATT = re.compile(r"(BODY|BODY\.PEEK)\[([^\]]*)(?:\]((?:<\d{1,10}\.\d{1,10}>)?))?\Z", re.I)
_AFTER_FIELDS = re.compile(r"\]((?:<\d{1,10}\.\d{1,10}>)?)\Z")
_PART = re.compile(r"[1-9]\d{0,8}\Z")
_HEADER_FIELD = re.compile(rb"[!-9;-~]+\Z")  # RFC 5322 ftext


def _fetch_att(cur: _Cursor) -> FetchAtt:
    item = cur.take("fetch attribute")
    if not isinstance(item, Atom):
        raise GrammarError("fetch attribute must be an atom")
    text = item.decode("ascii", "replace")
    upper = text.upper()
    if upper in _SIMPLE_ATTS:
        return FetchAtt(upper)
    if upper.startswith("BINARY"):
        return binary_fetch_att(text)
    m = _BODY_ATT.match(text)
    if m is None:
        raise GrammarError(f"unknown fetch attribute {text[:40]}")
    peek = m.group(1).upper() == "BODY.PEEK"
    spec = m.group(2).upper()
    fields: tuple[str, ...] = ()
    if m.group(3) is None:
        # "BODY[HEADER.FIELDS" (list) "]<o.n>": the tokenizer split it.
        names = cur.list("header field list")
        tail = cur.take("]")
        tm = _AFTER_FIELDS.match(tail.decode("ascii", "replace")) if isinstance(tail, Atom) else None
        if tm is None or not names:
            raise GrammarError("invalid HEADER.FIELDS")
        fields = tuple(_header_field(n) for n in names)
        partial_text = tm.group(1)
    else:
        partial_text = m.group(3)
    section = _section(spec, fields)
    partial = None
    if partial_text:
        origin, count = partial_text[1:-1].split(".")
        if int(count) == 0:
            raise GrammarError("partial count must not be zero")
        partial = (int(origin), int(count))
    return FetchAtt("BODY[]", section=section, partial=partial, peek=peek)


# RFC 3516 §4.2: fetch-att =/ "BINARY" [".PEEK"] section-binary [partial] /
#   "BINARY.SIZE" section-binary; section-binary = "[" [section-part] "]"
_BINARY_ATT = re.compile(r"(BINARY|BINARY\.PEEK|BINARY\.SIZE)\[([0-9.]{0,100})\](<\d{1,10}\.\d{1,10}>)?\Z",
                         re.I)


def binary_fetch_att(text: str) -> FetchAtt:
    """BINARY[1.2]<0.100>, BINARY.PEEK[...], BINARY.SIZE[...] -> FetchAtt."""
    m = _BINARY_ATT.match(text)
    if m is None:
        raise GrammarError(f"invalid BINARY fetch attribute {text[:40]}")
    kind = m.group(1).upper()
    parts: list[int] = []
    if m.group(2):
        for piece in m.group(2).split("."):
            if not _PART.match(piece):
                raise GrammarError("invalid BINARY section part")
            parts.append(int(piece))
    partial = None
    if m.group(3):
        if kind == "BINARY.SIZE":
            raise GrammarError("BINARY.SIZE takes no partial")
        origin, count = m.group(3)[1:-1].split(".")
        if int(count) == 0:
            raise GrammarError("partial count must not be zero")
        partial = (int(origin), int(count))
    name = "BINARY.SIZE" if kind == "BINARY.SIZE" else "BINARY[]"
    return FetchAtt(name, section=Section(part=tuple(parts)), partial=partial, peek=kind == "BINARY.PEEK")


def _header_field(item: Any) -> str:
    if not isinstance(item, (Atom, String)) or not _HEADER_FIELD.match(item):
        raise GrammarError("invalid header field name")
    return bytes(item).decode("ascii").upper()


def _section(spec: str, fields: tuple[str, ...]) -> Section:
    # section-spec = section-msgtext / (section-part ["." section-text])
    parts: list[int] = []
    pieces = spec.split(".") if spec else []
    while pieces and _PART.match(pieces[0]):
        parts.append(int(pieces.pop(0)))
    text = ".".join(pieces)
    if text in ("HEADER.FIELDS", "HEADER.FIELDS.NOT"):
        if not fields:
            raise GrammarError(f"{text} needs a field list")
    elif fields:
        raise GrammarError("field list only after HEADER.FIELDS")
    elif text not in ("", "HEADER", "TEXT", "MIME"):
        raise GrammarError(f"invalid section {spec[:40]}")
    if text == "MIME" and not parts:
        raise GrammarError("MIME needs a part number")
    return Section(part=tuple(parts), text=text, fields=fields)


def url_section(text: str) -> Section:
    """A section-spec as an IMAP URL writes it (RFC 5092 §3.3 isection,
    percent-decoded): "1.2", "HEADER", "1.MIME", "HEADER.FIELDS (FROM TO)"."""
    spec, paren, rest = text.partition(" (")
    fields: tuple[str, ...] = ()
    if paren:
        if not rest.endswith(")"):
            raise GrammarError("invalid HEADER.FIELDS list")
        names = rest[:-1].split()
        if not names or len(names) > 100:
            raise GrammarError("invalid HEADER.FIELDS list")
        fields = tuple(_header_field(Atom(n.encode("ascii", "replace"))) for n in names)
    return _section(spec.upper(), fields)


def _fetch(cur: _Cursor) -> FetchArgs:
    seqset = _seqset(cur)
    item = cur.peek()
    atts: list[FetchAtt] = []
    if isinstance(item, list):
        cur.take("fetch attributes")
        inner = _Cursor(item)
        if not inner.more():
            raise GrammarError("empty fetch attribute list")
        while inner.more():
            atts.append(_fetch_att(inner))
    elif isinstance(item, Atom) and item.upper().decode("ascii", "replace") in _FETCH_MACROS:
        cur.take("macro")
        atts = [FetchAtt(n) for n in _FETCH_MACROS[item.upper().decode()]]
    else:
        atts.append(_fetch_att(cur))
    changed_since = None
    vanished = False
    if isinstance(cur.peek(), list):
        # RFC 7162 §3.1.4.1, §3.2.6: fetch-modifiers = "(" fetch-modifier
        # *(SP fetch-modifier) ")"; CHANGEDSINCE 0 is valid (iOS sends it).
        mods = _Cursor(cur.take("fetch modifiers"))
        if not mods.more():
            raise GrammarError("empty fetch modifier list")
        while mods.more():
            name = mods.atom("fetch modifier").upper()
            if name == "CHANGEDSINCE" and changed_since is None:
                changed_since = _modseq(mods)
            elif name == "VANISHED" and not vanished:
                vanished = True
            else:
                raise GrammarError(f"unknown or repeated FETCH modifier {name[:30]}")
        if vanished and changed_since is None:
            raise GrammarError("VANISHED needs CHANGEDSINCE")  # RFC 7162 §3.2.6
    cur.end()
    return FetchArgs(seqset, tuple(atts), changed_since, vanished)


_MAX_MODSEQ = (1 << 63) - 1  # RFC 7162 §7: mod-sequence-value is below 2^63


def _modseq(cur: _Cursor) -> int:
    value = _number(cur, "mod-sequence")
    if value > _MAX_MODSEQ:
        raise GrammarError("mod-sequence out of range")
    return value


# --- STORE (RFC 3501 §6.4.6, RFC 7162 §3.1.3) ----------------------------------------

_STORE_ITEM = re.compile(r"([+-]?)FLAGS(\.SILENT)?\Z", re.I)


def _store(cur: _Cursor) -> StoreArgs:
    seqset = _seqset(cur)
    unchanged_since = None
    if isinstance(cur.peek(), list):
        mods = _Cursor(cur.take("modifiers"))
        if mods.atom("modifier").upper() != "UNCHANGEDSINCE":
            raise GrammarError("unknown STORE modifier")
        unchanged_since = _modseq(mods)
        mods.end()
    m = _STORE_ITEM.match(cur.atom("store item"))
    if m is None:
        raise GrammarError("store item must be FLAGS, +FLAGS or -FLAGS")
    mode = {"": "set", "+": "add", "-": "remove"}[m.group(1)]
    if isinstance(cur.peek(), list):
        flags = _flag_list(cur.take("flags"))
        cur.end()
    else:
        rest = cur.items[cur.pos :]
        if not rest:
            raise GrammarError("missing flags")  # "FLAGS ()" clears them all
        flags = _flag_list(rest)
    return StoreArgs(seqset, mode, bool(m.group(2)), flags, unchanged_since)


# --- SEARCH (RFC 3501 §6.4.4, RFC 4731) --------------------------------------------------

_NO_ARG_KEYS = {
    "ALL", "ANSWERED", "DELETED", "DRAFT", "FLAGGED", "NEW", "OLD", "RECENT", "SEEN",
    "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED", "UNSEEN",
}
_STRING_KEYS = {"BCC", "BODY", "CC", "FROM", "SUBJECT", "TEXT", "TO"}
_DATE_KEYS = {"BEFORE", "ON", "SINCE", "SENTBEFORE", "SENTON", "SENTSINCE"}
_SIZE_KEYS = {"LARGER", "SMALLER"}
# SAVE: RFC 5182 §2.1; UPDATE and CONTEXT (a hint): RFC 5267 §4.1
_ESEARCH_RETURNS = {"MIN", "MAX", "ALL", "COUNT", "SAVE", "UPDATE", "CONTEXT"}
_RESULT_RETURNS = {"MIN", "MAX", "ALL", "COUNT", "SAVE", "PARTIAL"}
_SEQSET_ATOM = re.compile(rb"[0-9*][0-9*:,]*\Z")
_MAX_SEARCH_DEPTH = 32


def _search(cur: _Cursor) -> SearchArgs:
    returns = None
    partial = None
    item = cur.peek()
    if isinstance(item, Atom) and item.upper() == b"RETURN":
        cur.take("RETURN")
        options = _Cursor(cur.list("return options"))
        returns = set()
        while options.more():
            opt = options.take("return option")
            name = opt.decode("ascii", "replace").upper() if isinstance(opt, Atom) else ""
            if name == "PARTIAL" and partial is None:
                partial = parse_partial_range(options.atom("partial range"))
            elif name not in _ESEARCH_RETURNS:
                raise GrammarError(f"unsupported SEARCH return option {name or '?'}")
            returns.add(name)
        if partial is not None and "ALL" in returns:
            raise GrammarError("PARTIAL and ALL exclude each other")  # RFC 9394 §3
        if not returns & _RESULT_RETURNS:
            returns.add("ALL")  # RETURN () and RETURN (UPDATE) answer ALL
        returns = frozenset(returns)
        if "SAVE" in returns:
            try:
                return _search_criteria(cur, returns, partial)
            except GrammarError as e:
                e.resets_search_result = True  # type: ignore[attr-defined]  # RFC 5182 §2.1
                raise
    return _search_criteria(cur, returns, partial)


def parse_partial_range(text: str) -> tuple[int, int]:
    """RFC 9394 §3: partial-range-first = nz-number ":" nz-number;
    partial-range-last = "-" nz-number ":" "-" nz-number.  Positions are
    1-based; negative ones count from the end (-1 is the last).  Returned
    as (low, high) with |low| <= |high|, e.g. (1, 100) or (-1, -100)."""
    first, colon, second = text.partition(":")
    if not colon:
        raise GrammarError("invalid PARTIAL range")
    negative = first.startswith("-")
    if negative != second.startswith("-"):
        raise GrammarError("PARTIAL range mixes positive and negative positions")
    a, b = (first[1:], second[1:]) if negative else (first, second)
    if not (a.isdigit() and b.isdigit() and len(a) <= 10 and len(b) <= 10) or not int(a) or not int(b):
        raise GrammarError("invalid PARTIAL range")
    low, high = sorted((int(a), int(b)))
    if high > _MAX_NUMBER:
        raise GrammarError("PARTIAL range out of range")
    return (-low, -high) if negative else (low, high)


def _search_criteria(cur: _Cursor, returns: frozenset[str] | None,
                     partial: tuple[int, int] | None = None) -> SearchArgs:
    charset = "UTF-8"
    item = cur.peek()
    if isinstance(item, Atom) and item.upper() == b"CHARSET":
        cur.take("CHARSET")
        charset = cur.astring("charset").decode("ascii", "replace").upper()
        if charset not in SUPPORTED_CHARSETS:
            raise BadCharset(charset)
    keys = []
    while cur.more():
        keys.append(_search_key(cur, charset, 0))
    if not keys:
        raise GrammarError("missing search key")
    return SearchArgs(SearchAnd(tuple(keys)), charset, returns, partial)


# --- MULTISEARCH (RFC 7377) ----------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EsearchArgs:
    """RFC 7377 §2: ESEARCH [IN (source-mbox)] [RETURN (...)] search-program.
    sources: (filter, mailbox names) pairs, e.g. ("personal", ()) or
    ("subtree", ("Projects",)); None: the selected mailbox."""

    sources: tuple[tuple[str, tuple[str, ...]], ...] | None
    search: SearchArgs


_FILTERS = {"SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED"}  # RFC 5465 §6
_FILTERS_WITH_NAMES = {"SUBTREE", "SUBTREE-ONE", "MAILBOXES"}
MAX_ESEARCH_SOURCES = 100


def _esearch(cur: _Cursor) -> EsearchArgs:
    # esearch = "ESEARCH" [SP esearch-source-opts] [SP search-return-opts] SP search-program
    # esearch-source-opts = "IN" SP "(" source-mbox [SP "(" scope-options ")"] ")"
    sources = None
    item = cur.peek()
    if isinstance(item, Atom) and item.upper() == b"IN":
        cur.take("IN")
        src = _Cursor(cur.list("source mailboxes"))
        found: list[tuple[str, tuple[str, ...]]] = []
        while src.more():
            if isinstance(src.peek(), list):
                raise GrammarError("no scope options are supported")  # RFC 7377 §2: BAD
            name = src.atom("mailbox filter").upper()
            if name in _FILTERS:
                found.append((name.lower(), ()))
            elif name in _FILTERS_WITH_NAMES:
                # one-or-more-mailbox = mailbox / "(" mailbox *(SP mailbox) ")"
                if isinstance(src.peek(), list):
                    names = _Cursor(src.take("mailboxes"))
                    boxes = []
                    while names.more():
                        boxes.append(names.mailbox())
                    if not boxes:
                        raise GrammarError("empty mailbox list")
                else:
                    boxes = [src.mailbox()]
                found.append((name.lower(), tuple(boxes)))
            else:
                raise GrammarError(f"unknown mailbox filter {name[:30]}")
            if len(found) > MAX_ESEARCH_SOURCES:
                raise GrammarError("too many mailbox filters")
        if not found:
            raise GrammarError("empty source mailbox list")
        sources = tuple(found)
    search = _search(cur)
    if search.returns is not None and search.returns & {"SAVE", "UPDATE"}:
        raise GrammarError("SAVE and UPDATE are not allowed in ESEARCH")  # RFC 7377 §2
    return EsearchArgs(sources, search)


# --- NOTIFY (RFC 5465 §8) --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventGroup:
    """One `(filter-mailboxes events)` group of NOTIFY SET.

    filter: "selected", "selected-delayed", "inboxes", "personal",
    "subscribed", "subtree" or "mailboxes"; mailboxes: the names of subtree
    and mailboxes.  events: the event names as canonically spelled when
    known ("MessageNew"), else upper-cased as sent (refused later with
    BADEVENT, §3.1); () for `NONE`.  fetch_atts: MessageNew's attributes."""

    filter: str
    mailboxes: tuple[str, ...]
    events: tuple[str, ...]
    fetch_atts: tuple[FetchAtt, ...] = ()


@dataclass(frozen=True, slots=True)
class NotifyArgs:
    """NOTIFY NONE (groups is None) or NOTIFY SET [STATUS] groups."""

    groups: tuple[EventGroup, ...] | None
    status: bool = False


KNOWN_EVENTS = {name.upper(): name for name in (
    "MessageNew", "MessageExpunge", "FlagChange", "AnnotationChange", "MailboxName",
    "SubscriptionChange", "MailboxMetadataChange", "ServerMetadataChange")}  # RFC 5465 §5
_NOTIFY_FILTERS = {"SELECTED", "SELECTED-DELAYED", "INBOXES", "PERSONAL", "SUBSCRIBED"}  # §6
_NOTIFY_FILTERS_WITH_NAMES = {"SUBTREE", "MAILBOXES"}
MAX_NOTIFY_GROUPS = 100
MAX_NOTIFY_EVENTS = 20  # per group: more than every event there is, twice


def _notify(cur: _Cursor) -> NotifyArgs:
    # notify = "NOTIFY" SP (notify-set / notify-none)
    # notify-none = "NONE"
    # notify-set = "SET" [status-indicator] SP event-groups
    # status-indicator = SP "STATUS"
    verb = cur.atom("SET or NONE").upper()
    if verb == "NONE":
        cur.end()
        return NotifyArgs(None)
    if verb != "SET":
        raise GrammarError("NOTIFY takes SET or NONE")
    status = False
    item = cur.peek()
    if isinstance(item, Atom) and item.upper() == b"STATUS":
        cur.take("STATUS")
        status = True
    groups: list[EventGroup] = []
    # event-groups = event-group *(SP event-group)
    while cur.more():
        groups.append(_event_group(_Cursor(cur.list("event group"))))
        if len(groups) > MAX_NOTIFY_GROUPS:
            raise GrammarError("too many event groups")
    if not groups:
        raise GrammarError("NOTIFY SET needs at least one event group")
    return NotifyArgs(tuple(groups), status)


def _event_group(cur: _Cursor) -> EventGroup:
    # event-group = "(" filter-mailboxes SP events ")"
    # filter-mailboxes-other = "inboxes" / "personal" / "subscribed" /
    #     ("subtree" SP one-or-more-mailbox) / ("mailboxes" SP one-or-more-mailbox)
    name = cur.atom("mailbox filter").upper()
    boxes: list[str] = []
    if name in _NOTIFY_FILTERS_WITH_NAMES:
        if isinstance(cur.peek(), list):
            names = _Cursor(cur.take("mailboxes"))
            while names.more():
                boxes.append(names.mailbox())
                if len(boxes) > MAX_ESEARCH_SOURCES:
                    raise GrammarError("too many mailboxes")
            if not boxes:
                raise GrammarError("empty mailbox list")
        else:
            boxes.append(cur.mailbox())
    elif name not in _NOTIFY_FILTERS:
        raise GrammarError(f"unknown mailbox filter {name[:30]}")
    # events = ( "(" event *(SP event) ")" ) / "NONE"
    item = cur.take("events")
    events: list[str] = []
    atts: list[FetchAtt] = []
    if isinstance(item, Atom) and item.upper() == b"NONE":
        pass
    elif isinstance(item, list) and item:
        inner = _Cursor(item)
        while inner.more():
            event = inner.atom("event").upper()
            events.append(KNOWN_EVENTS.get(event, event[:40]))
            if len(events) > MAX_NOTIFY_EVENTS:
                raise GrammarError("too many events")
            if isinstance(inner.peek(), list):
                # message-event = ("MessageNew" [SP "(" fetch-att *(SP fetch-att) ")"]) / ...
                if events[-1] != "MessageNew" or atts:
                    raise GrammarError("only MessageNew takes fetch attributes")
                fetch = _Cursor(inner.take("fetch attributes"))
                if not fetch.more():
                    raise GrammarError("empty fetch attribute list")
                while fetch.more():
                    atts.append(_fetch_att(fetch))
    else:
        raise GrammarError("events must be a parenthesised list or NONE")
    cur.end()
    return EventGroup(name.lower(), tuple(boxes), tuple(events), tuple(atts))


def _cancelupdate(cur: _Cursor) -> tuple[bytes, ...]:
    # RFC 5267 §4.3: "CANCELUPDATE" 1*(SP quoted)
    tags = []
    while cur.more():
        tags.append(cur.string("tag"))
    if not tags or len(tags) > 100:
        raise GrammarError("CANCELUPDATE needs the tags of updating searches")
    return tuple(tags)


def _charset_and_keys(cur: _Cursor) -> tuple[str, SearchAnd]:
    charset = cur.astring("charset").decode("ascii", "replace").upper()
    if charset not in SUPPORTED_CHARSETS:
        raise BadCharset(charset)
    keys = []
    while cur.more():
        keys.append(_search_key(cur, charset, 0))
    if not keys:
        raise GrammarError("missing search key")
    return charset, SearchAnd(tuple(keys))


def _sort(cur: _Cursor) -> sortmod.SortArgs:
    # RFC 5256 §5: sort = ["UID" SP] "SORT" SP sort-criteria SP search-criteria
    # RFC 5267 §3: ... "SORT" [SP sort-return-opts] SP sort-criteria ...
    try:
        returns = None
        partial = None
        item = cur.peek()
        if isinstance(item, Atom) and item.upper() == b"RETURN":
            cur.take("RETURN")
            options, partial = _take_partial(cur.list("return options"))
            returns = sortmod.parse_esort_returns(options)
            if partial is not None:
                if any(isinstance(o, Atom) and o.upper() == b"ALL" for o in options):
                    raise GrammarError("PARTIAL and ALL exclude each other")  # RFC 9394 §3
                returns = (returns - {"ALL"}) | {"PARTIAL"}  # ALL was only implied
        criteria = sortmod.parse_sort_criteria(cur.list("sort criteria"))
    except sortmod.SortSyntaxError as e:
        raise GrammarError(str(e)) from None
    charset, key = _charset_and_keys(cur)
    return sortmod.SortArgs(criteria, key, charset, returns, partial)


def _take_partial(options: list[Any]) -> tuple[list[Any], tuple[int, int] | None]:
    """RFC 9394: "PARTIAL" SP partial-range out of a RETURN option list."""
    rest: list[Any] = []
    partial = None
    i = 0
    while i < len(options):
        item = options[i]
        if isinstance(item, Atom) and item.upper() == b"PARTIAL" and partial is None:
            if i + 1 >= len(options) or not isinstance(options[i + 1], Atom):
                raise GrammarError("PARTIAL needs a range")
            partial = parse_partial_range(options[i + 1].decode("ascii", "replace"))
            i += 2
            continue
        rest.append(item)
        i += 1
    return rest, partial


def _thread(cur: _Cursor) -> threadmod.ThreadArgs:
    # RFC 5256 §5: thread = ["UID" SP] "THREAD" SP thread-alg SP search-criteria
    try:
        algorithm = threadmod.parse_thread_algorithm(cur.take("threading algorithm"))
    except threadmod.ThreadSyntaxError as e:
        raise GrammarError(str(e)) from None
    charset, key = _charset_and_keys(cur)
    return threadmod.ThreadArgs(algorithm, key, charset)


def _search_string(cur: _Cursor, charset: str) -> str:
    raw = cur.astring("search string")
    return raw.decode("utf-8", "replace")


def _search_key(cur: _Cursor, charset: str, depth: int) -> SearchExpr:
    if depth > _MAX_SEARCH_DEPTH:
        raise GrammarError("search keys nested too deeply")
    item = cur.take("search key")
    if isinstance(item, list):
        inner = _Cursor(item)
        keys = []
        while inner.more():
            keys.append(_search_key(inner, charset, depth + 1))
        if not keys:
            raise GrammarError("empty search key list")
        return SearchAnd(tuple(keys))
    if not isinstance(item, Atom):
        raise GrammarError("search key must be an atom")
    if _SEQSET_ATOM.match(item):
        return SearchKey("SEQSET", (parse_seqset(item.decode()),))
    if item == b"$":
        return SearchKey("SEQSET", (SAVED_RESULT,))  # RFC 5182 §3
    name = item.decode("ascii", "replace").upper()
    if name in _NO_ARG_KEYS:
        return SearchKey(name)
    if name in _STRING_KEYS:
        return SearchKey(name, (_search_string(cur, charset),))
    if name in _DATE_KEYS:
        return SearchKey(name, (_date(cur),))
    if name in _SIZE_KEYS:
        return SearchKey(name, (_number(cur, "size"),))
    if name == "UID":
        return SearchKey("UID", (_seqset(cur),))
    if name == "HEADER":
        field_name = cur.astring("header field name").decode("ascii", "replace")
        return SearchKey("HEADER", (field_name, _search_string(cur, charset)))
    if name in ("KEYWORD", "UNKEYWORD"):
        return SearchKey(name, (parse_flag(cur.take("keyword")),))
    if name == "MODSEQ":
        # RFC 7162 §3.1.5: "MODSEQ" [SP entry-name SP entry-type-req] SP
        # mod-sequence-valzer; one modseq per message here, so the entry
        # only has to be well-formed.
        if isinstance(cur.peek(), String):
            entry = cur.string("entry name").decode("utf-8", "replace")
            kind = cur.atom("entry type").lower()
            if kind not in ("priv", "shared", "all"):
                raise GrammarError("MODSEQ entry type must be priv, shared or all")
            return SearchKey("MODSEQ", (entry, kind, _modseq(cur)))
        return SearchKey("MODSEQ", (_modseq(cur),))
    if name == "NOT":
        return SearchNot(_search_key(cur, charset, depth + 1))
    if name == "OR":
        left = _search_key(cur, charset, depth + 1)
        return SearchOr(left, _search_key(cur, charset, depth + 1))
    raise GrammarError(f"unknown search key {name[:30]}")


# --- mailbox commands ------------------------------------------------------------------------

_STATUS_ITEMS = {"MESSAGES", "RECENT", "UIDNEXT", "UIDVALIDITY", "UNSEEN",
                 "HIGHESTMODSEQ",  # RFC 7162 §3.1.2.3
                 "DELETED", "DELETED-STORAGE",  # RFC 9208 §4.3
                 "SIZE"}  # RFC 9051 §6.3.11
_LIST_SELECTION = {"SUBSCRIBED", "REMOTE", "RECURSIVEMATCH", "SPECIAL-USE"}
_LIST_RETURN = {"SUBSCRIBED", "CHILDREN", "SPECIAL-USE"}
SPECIAL_USES = {u.upper(): u for u in ("\\All", "\\Archive", "\\Drafts", "\\Flagged", "\\Junk",
                                       "\\Sent", "\\Trash")}


def _status_items(items: list[Any]) -> tuple[str, ...]:
    out = []
    for item in items:
        name = item.decode("ascii", "replace").upper() if isinstance(item, Atom) else ""
        if name not in _STATUS_ITEMS:
            raise GrammarError(f"unknown STATUS item {name or '?'}")
        out.append(name)
    if not out:
        raise GrammarError("empty STATUS item list")
    return tuple(dict.fromkeys(out))


def _status(cur: _Cursor) -> StatusArgs:
    name = cur.mailbox()
    items = _status_items(cur.list("status items"))
    cur.end()
    return StatusArgs(name, items)


def _list_mailbox(cur: _Cursor, what: str) -> str:
    # RFC 3501 §9: list-mailbox = 1*list-char / string
    raw = cur.astring(what)
    try:
        return decode_mailbox(raw, _UTF8_NAMES.get())
    except (UnicodeDecodeError, ValueError):
        return UnusableMailboxName.of(raw)  # matches no folder: LIST says OK, lists nothing


def _list(cur: _Cursor) -> ListArgs:
    # RFC 5258 §3: list = "LIST" [SP list-select-opts] SP mailbox SP mbox-or-pat
    #                     [SP list-return-opts]
    selection: set[str] = set()
    extended = False
    if isinstance(cur.peek(), list):
        extended = True
        for opt in cur.take("selection options"):
            name = opt.decode("ascii", "replace").upper() if isinstance(opt, Atom) else ""
            if name not in _LIST_SELECTION:
                raise GrammarError(f"unknown LIST selection option {name or '?'}")
            selection.add(name)
        if "RECURSIVEMATCH" in selection and not selection - {"RECURSIVEMATCH", "REMOTE"}:
            # RFC 5258 §3: RECURSIVEMATCH alone, or with REMOTE only, is BAD.
            raise GrammarError("RECURSIVEMATCH needs a selection option other than REMOTE")
    reference = _list_mailbox(cur, "reference name")
    if isinstance(cur.peek(), list):
        extended = True
        patterns = tuple(_list_mailbox(_Cursor([p]), "mailbox pattern") for p in cur.take("patterns"))
        if not patterns:
            raise GrammarError("empty pattern list")
    else:
        patterns = (_list_mailbox(cur, "mailbox pattern"),)
    returns: set[str] = set()
    status_items: tuple[str, ...] = ()
    if cur.more():
        if not (isinstance(cur.peek(), Atom) and cur.peek().upper() == b"RETURN"):
            raise GrammarError("unexpected LIST argument")
        cur.take("RETURN")
        extended = True
        opts = _Cursor(cur.list("return options"))
        while opts.more():
            name = opts.atom("return option").upper()
            if name == "STATUS":  # RFC 5819
                status_items = _status_items(opts.list("status items"))
            elif name in _LIST_RETURN:
                returns.add(name)
            else:
                raise GrammarError(f"unknown LIST return option {name}")
    cur.end()
    return ListArgs(reference, patterns, frozenset(selection), frozenset(returns), status_items,
                    extended)


def _lsub(cur: _Cursor) -> ListArgs:
    reference = _list_mailbox(cur, "reference name")
    pattern = _list_mailbox(cur, "mailbox pattern")
    cur.end()
    return ListArgs(reference, (pattern,), lsub=True)


def _create(cur: _Cursor) -> CreateArgs:
    name = cur.mailbox()
    uses: list[str] = []
    if cur.more():
        # RFC 6154 §3: create-param = "USE" SP "(" [use-attr *(SP use-attr)] ")"
        params = _Cursor(cur.list("create parameters"))
        while params.more():
            if params.atom("create parameter").upper() != "USE":
                raise GrammarError("unknown CREATE parameter")
            for item in params.list("special-use list"):
                use = None
                if isinstance(item, Atom):
                    use = SPECIAL_USES.get(item.decode("ascii", "replace").upper())
                if use is None:
                    raise GrammarError("unknown special-use attribute")
                uses.append(use)
    cur.end()
    return CreateArgs(name, tuple(uses))


def _append(cur: _Cursor) -> AppendArgs:
    # RFC 3501 §6.3.11: APPEND mailbox [SP flag-list] [SP date-time] SP literal
    # RFC 3502 §6: append = "APPEND" SP mailbox 1*append-message (MULTIAPPEND);
    # RFC 3516 §4.4: literal8; RFC 4469 §5: append-data =/ "CATENATE" SP "(" cat-part ... ")"
    name = cur.mailbox()
    messages = []
    while True:
        messages.append(_append_message(cur))
        if not cur.more():
            break
        if len(messages) >= MAX_APPEND_MESSAGES:
            raise GrammarError(f"more than {MAX_APPEND_MESSAGES} messages in one APPEND")
    first = messages[0]
    return AppendArgs(name, first.flags, first.internaldate, first.message, tuple(messages[1:]))


MAX_APPEND_MESSAGES = 1000  # messages in one MULTIAPPEND (RFC 3502)
MAX_CATENATE_PARTS = 100  # parts of one CATENATE message (RFC 4469)
_DATE_TIME_LENGTH = 26  # "dd-Mon-yyyy hh:mm:ss +zzzz"


def _append_message(cur: _Cursor) -> AppendMessage:
    # append-message = append-opts SP append-data; append-opts = [SP flag-list] [SP date-time]
    flags: tuple[str, ...] = ()
    internaldate = None
    if isinstance(cur.peek(), list):
        flags = _flag_list(cur.take("flags"))
    item = cur.peek()
    if isinstance(item, String) and cur.pos + 1 < len(cur.items):
        # A date-time is a quoted string; the message data always follows it.
        # A literal of date-time length that parses as one is tolerated.
        if isinstance(item, QuotedString):
            internaldate = parse_date_time(cur.take("date-time").decode("ascii", "replace"))
        elif len(item) == _DATE_TIME_LENGTH:
            try:
                internaldate = parse_date_time(item.decode("ascii", "replace"))
                cur.take("date-time")
            except GrammarError:
                pass  # a 26-octet message of a MULTIAPPEND
    item = cur.peek()
    message: bytes | SpooledLiteral | tuple[CatenatePart, ...]
    if isinstance(item, SpooledLiteral):
        message = cur.take("message")
    elif isinstance(item, Atom) and item.upper() == b"CATENATE":
        cur.take("CATENATE")
        message = _catenate_parts(cur.list("CATENATE parts"))
    else:
        message = cur.string("message")
    return AppendMessage(flags, internaldate, message)


def _catenate_parts(items: list[Any]) -> tuple[CatenatePart, ...]:
    # RFC 4469 §5: cat-part = text-literal / url; text-literal = "TEXT" SP literal;
    # url = "URL" SP astring.  RFC 3516 §4.4: text-literal =/ "TEXT" SP literal8
    cur = _Cursor(items)
    parts = []
    while cur.more():
        kind = cur.atom("CATENATE part type").upper()
        if kind == "TEXT":
            item = cur.take("TEXT literal")
            if isinstance(item, SpooledLiteral) or isinstance(item, LiteralString):
                parts.append(CatenatePart("TEXT", item if isinstance(item, SpooledLiteral) else bytes(item)))
            else:
                raise GrammarError("CATENATE TEXT must be a literal")
        elif kind == "URL":
            parts.append(CatenatePart("URL", cur.astring("URL").decode("utf-8", "replace")))
        else:
            raise GrammarError("CATENATE part must be TEXT or URL")
        if len(parts) > MAX_CATENATE_PARTS:
            raise GrammarError(f"more than {MAX_CATENATE_PARTS} CATENATE parts")
    if not parts:
        raise GrammarError("empty CATENATE list")
    return tuple(parts)


def _copy(cur: _Cursor) -> CopyArgs:
    seqset = _seqset(cur)
    name = cur.mailbox()
    cur.end()
    return CopyArgs(seqset, name)


def _authenticate(cur: _Cursor) -> AuthenticateArgs:
    mechanism = cur.atom("mechanism").upper()
    initial = None
    if cur.more():
        # RFC 4959: initial response, "=" meaning empty
        raw = cur.atom("initial response").encode("ascii")
        initial = b"" if raw == b"=" else raw
    cur.end()
    return AuthenticateArgs(mechanism, initial)


def _login(cur: _Cursor) -> tuple[str, str]:
    user = cur.astring("user name").decode("utf-8", "replace")
    password = cur.astring("password").decode("utf-8", "replace")
    cur.end()
    return user, password


def _id(cur: _Cursor) -> IdArgs:
    # RFC 2971 §4: id = "ID" SP id-params-list; id-params-list = "(" ... ")" / nil
    item = cur.take("ID parameters")
    cur.end()
    if isinstance(item, Atom) and item.upper() == b"NIL":
        return IdArgs(None)
    if not isinstance(item, list) or len(item) % 2 or len(item) > 60:
        raise GrammarError("ID parameters must be NIL or a list of pairs")
    params: dict[str, str | None] = {}
    for key, value in zip(item[::2], item[1::2], strict=True):
        if not isinstance(key, String):
            raise GrammarError("ID field names must be strings")
        if isinstance(value, Atom) and value.upper() == b"NIL":
            params[key.decode("utf-8", "replace")] = None
        elif isinstance(value, String):
            params[key.decode("utf-8", "replace")] = value.decode("utf-8", "replace")
        else:
            raise GrammarError("ID values must be strings or NIL")
    return IdArgs(params)


def _enable(cur: _Cursor) -> tuple[str, ...]:
    caps = []
    while cur.more():
        caps.append(cur.atom("capability").upper())
    if not caps:
        raise GrammarError("ENABLE needs a capability")
    return tuple(caps)


def _no_args(cur: _Cursor) -> None:
    cur.end()


def _one_mailbox(cur: _Cursor) -> str:
    name = cur.mailbox()
    cur.end()
    return name


def _select(cur: _Cursor) -> SelectArgs:
    # RFC 4466 §2.1: select-params = "(" select-param *(SP select-param) ")";
    # RFC 7162 §3.1.8 (CONDSTORE) and §3.2.5 (QRESYNC (...)).
    name = cur.mailbox()
    condstore = False
    qresync = None
    if cur.more():
        params = _Cursor(cur.list("select parameters"))
        if not params.more():
            raise GrammarError("empty select parameter list")
        while params.more():
            param = params.atom("select parameter").upper()
            if param == "CONDSTORE" and not condstore:
                condstore = True
            elif param == "QRESYNC" and qresync is None:
                qresync = _qresync_params(_Cursor(params.list("QRESYNC parameters")))
            else:
                raise GrammarError(f"unknown or repeated select parameter {param[:30]}")
    cur.end()
    return SelectArgs.make(name, condstore, qresync)


def _qresync_params(cur: _Cursor) -> QresyncParams:
    uidvalidity = _number(cur, "uidvalidity")
    if not 0 < uidvalidity <= _MAX_NUMBER:
        raise GrammarError("invalid uidvalidity")
    modseq = _modseq(cur)
    if modseq == 0:
        raise GrammarError("QRESYNC mod-sequence must not be zero")  # mod-sequence-value
    known = None
    seq_match = None
    if cur.more() and not isinstance(cur.peek(), list):
        known = _uid_set(cur)
    if cur.more():
        pair = _Cursor(cur.list("sequence match data"))
        seq_match = (_uid_set(pair), _uid_set(pair))
        pair.end()
    cur.end()
    return QresyncParams(uidvalidity, modseq, known, seq_match)


def _uid_set(cur: _Cursor) -> SeqSet:
    seqset = _seqset(cur)
    if any(STAR in (r.low, r.high) for r in seqset.ranges):
        raise GrammarError("\"*\" is not allowed here")  # RFC 7162 §7 known-uids
    return seqset


def _one_astring(cur: _Cursor) -> str:
    value = cur.astring("quota root").decode("utf-8", "replace")
    cur.end()
    return value


def _setquota(cur: _Cursor) -> tuple[str, list[tuple[str, int]]]:
    # RFC 9208 §4.1.3: setquota = "SETQUOTA" SP quota-root-name SP setquota-list
    root = cur.astring("quota root").decode("utf-8", "replace")
    items = _Cursor(cur.list("quota resource list"))
    limits = []
    while items.more():
        limits.append((items.atom("resource name").upper(), _number(items, "resource limit")))
    cur.end()
    return root, limits


def _compress(cur: _Cursor) -> str:
    mechanism = cur.atom("compression mechanism").upper()
    cur.end()
    return mechanism


def _rename(cur: _Cursor) -> tuple[str, str]:
    old = cur.mailbox()
    new = cur.mailbox()
    cur.end()
    return old, new


def _uid_expunge(cur: _Cursor) -> SeqSet:
    seqset = _seqset(cur)
    cur.end()
    return seqset


_PARSERS: dict[str, Callable[[_Cursor], Any]] = {
    "CAPABILITY": _no_args, "NOOP": _no_args, "LOGOUT": _no_args, "STARTTLS": _no_args,
    "AUTHENTICATE": _authenticate, "LOGIN": _login, "ID": _id, "ENABLE": _enable,
    "SELECT": _select, "EXAMINE": _select, "CREATE": _create, "DELETE": _one_mailbox,
    "RENAME": _rename, "SUBSCRIBE": _one_mailbox, "UNSUBSCRIBE": _one_mailbox, "LIST": _list,
    "LSUB": _lsub, "STATUS": _status, "APPEND": _append, "NAMESPACE": _no_args, "IDLE": _no_args,
    "CHECK": _no_args, "CLOSE": _no_args, "UNSELECT": _no_args, "EXPUNGE": _no_args,
    "SEARCH": _search, "FETCH": _fetch, "STORE": _store, "COPY": _copy, "MOVE": _copy,
    "SORT": _sort, "THREAD": _thread,
    "GETQUOTA": _one_astring, "GETQUOTAROOT": _one_mailbox, "SETQUOTA": _setquota,  # RFC 9208
    "COMPRESS": _compress,  # RFC 4978
    "ESEARCH": _esearch,  # RFC 7377
    "CANCELUPDATE": _cancelupdate,  # RFC 5267
    "NOTIFY": _notify,  # RFC 5465
}
_UID_PARSERS: dict[str, Callable[[_Cursor], Any]] = {
    "FETCH": _fetch, "SEARCH": _search, "STORE": _store, "COPY": _copy, "MOVE": _copy,
    "EXPUNGE": _uid_expunge,  # RFC 4315 §2.1
    "SORT": _sort, "THREAD": _thread,  # RFC 5256
}

COMMAND_NAMES = frozenset(_PARSERS) | {"UID"}


def command_name(items: list[Any]) -> str | None:
    """The upper-cased command name of a (partial) command, e.g. for limits."""
    if len(items) >= 2 and isinstance(items[1], Atom):
        return items[1].decode("ascii", "replace").upper()
    return None


def parse_command(items: list[Any], *, utf8_names: bool = False) -> Request:
    """Raises GrammarError (with `.tag` set when the tag was readable).
    utf8_names: the session enabled IMAP4rev2 (RFC 9051 §5.1)."""
    token = _UTF8_NAMES.set(utf8_names)
    try:
        return _parse_command(items)
    finally:
        _UTF8_NAMES.reset(token)


def _parse_command(items: list[Any]) -> Request:
    tag = tag_of(items)
    try:
        if tag is None:
            raise GrammarError("missing or invalid tag")
        cur = _Cursor(items)
        cur.pos = 1
        name = cur.atom("command name").upper()
        uid = False
        if name == "UID":
            uid = True
            name = cur.atom("UID command").upper()
            parser = _UID_PARSERS.get(name)
        else:
            parser = _PARSERS.get(name)
        if parser is None:
            raise GrammarError(f"unknown command {name[:30]}")
        return Request(tag, name, uid, parser(cur))
    except GrammarError as e:
        e.tag = tag  # type: ignore[attr-defined]
        raise
    except BadCharset as e:
        e.tag = tag  # type: ignore[attr-defined]
        raise
