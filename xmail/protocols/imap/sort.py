# -*- test-case-name: tests.protocols.test_imap_sort_model -*-
"""SORT (RFC 5256 §3), SORT=DISPLAY (RFC 5957) and ESORT result shaping (RFC 5267).

    parse_sort_criteria(items) -> SortCriteria
    sort_uids(folder, records, criteria, *, search_result_uids) -> list[int]
    parse_esort_returns(items) -> frozenset[str]
    esort_result(numbers, returns) -> list[tuple[str, str]]
    esort_response(tag, numbers, returns, *, uid) -> bytes

Pure and synchronous, no Twisted: the server runs `sort_uids` in a thread
when the criteria need headers (`SortCriteria.needs_headers`).

Inputs are the same as search.run_search's: `records` is the session's view
of the folder in sequence order (a record's 1-based position is its message
sequence number), `search_result_uids` the UIDs run_search matched.  The
result is those UIDs in sort order; the caller maps them to sequence numbers
for SORT and sends them as they are for UID SORT.

Sort keys come from the index only, never from the message files:
MessageRecord.internaldate / .size and the derived header keys that
xmail.message caches at delivery (":sent-ts", ":base-subject",
":sort-from", ":sort-to", ":sort-cc", ":display-from", ":display-to"),
read with `folder.headers_many(uids)` in batches.

Rules:
- ARRIVAL: INTERNALDATE.  SIZE: RFC822.SIZE.
- DATE: the sent date (RFC 5256 §2.2): the Date field in UTC; the
  INTERNALDATE when the field is missing or cannot be parsed.
- SUBJECT: the base subject (RFC 5256 §2.1).
- FROM / TO / CC: the addr-mailbox of the first address; "" when absent.
- DISPLAYFROM / DISPLAYTO: the decoded display name of the first address,
  else "mailbox@host" (RFC 5957 §3); "" when absent.
- Strings are compared with i;unicode-casemap (RFC 5051): simple titlecase,
  NFKD, then code point order (so "[" and "_" sort after letters).
- FROM / TO / CC whose first address is a group: the group name (RFC 5256
  §3 with RFC 3501 §7.4.2's group marker), computed at delivery.
- REVERSE reverses one criterion only; messages equal on every criterion
  stay in ascending sequence order (RFC 5256 §3, "REVERSE ... does not affect
  the implicit sequence number sort criterion").
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from xmail.message import base_subject
from xmail.protocols.imap.model import SearchAnd
from xmail.protocols.imap.tokenizer import String
from xmail.store.interfaces import MessageRecord

__all__ = [
    "ESORT_RETURNS", "HEADER_BATCH", "SORT_KEYS", "SortArgs", "SortCriteria", "SortCriterion",
    "SortSyntaxError", "cached_headers", "collation_key", "esort_response", "esort_result",
    "key_values",
    "parse_esort_returns", "parse_sort_criteria", "sent_date", "sort_order_set", "sort_uids",
    "subject_key",
]

# RFC 5256 §3 sort-key, plus RFC 5957's two.
SORT_KEYS = frozenset(("ARRIVAL", "CC", "DATE", "FROM", "SIZE", "SUBJECT", "TO",
                       "DISPLAYFROM", "DISPLAYTO"))
_RECORD_KEYS = frozenset(("ARRIVAL", "SIZE"))
ESORT_RETURNS = frozenset(("MIN", "MAX", "ALL", "COUNT"))  # RFC 5267 §3.1 (RFC 4731 names)
# RFC 5267 §4.1: UPDATE (CONTEXT=SORT, esort.py) and CONTEXT (a hint, ignored).
_CONTEXT_RETURNS = frozenset(("UPDATE", "CONTEXT"))
HEADER_BATCH = 4096  # UIDs per folder.headers_many call: bounded memory, few transactions


class SortSyntaxError(ValueError):
    """Malformed sort criteria or return options (the grammar answers BAD)."""


@dataclass(frozen=True, slots=True)
class SortCriterion:
    key: str  # one of SORT_KEYS, upper case
    reverse: bool = False


@dataclass(frozen=True, slots=True)
class SortCriteria:
    """The parenthesised list of a SORT command, in order of precedence."""

    criteria: tuple[SortCriterion, ...]

    def __iter__(self) -> Any:
        return iter(self.criteria)

    def __len__(self) -> int:
        return len(self.criteria)

    @property
    def needs_headers(self) -> bool:
        """True when sorting reads cached headers (not only the records)."""
        return any(c.key not in _RECORD_KEYS for c in self.criteria)

    @classmethod
    def of(cls, *spec: str | tuple[str, bool]) -> SortCriteria:
        """SortCriteria.of("DATE", ("SUBJECT", True)) — for tests and callers."""
        out = []
        for item in spec:
            key, reverse = (item, False) if isinstance(item, str) else item
            if key not in SORT_KEYS:
                raise SortSyntaxError(f"unknown sort key {key}")
            out.append(SortCriterion(key, reverse))
        return cls(tuple(out))


@dataclass(frozen=True, slots=True)
class SortArgs:
    """A parsed `[UID] SORT [RETURN (...)] (criteria) charset keys` (RFC 5256
    §5, RFC 5267 §3) for grammar.py to produce."""

    criteria: SortCriteria
    key: SearchAnd
    charset: str = "UTF-8"
    returns: frozenset[str] | None = None  # None: a plain SORT response; else ESORT
    partial: tuple[int, int] | None = None  # RFC 9394 RETURN (PARTIAL low:high)


def _atom_text(item: Any, what: str) -> str:
    # Atoms arrive from tokenizer.py as `Atom` (a bytes subclass); quoted or
    # literal strings are `String` and are not sort keys.
    if isinstance(item, str):
        return item.upper()
    if isinstance(item, (bytes, bytearray)) and not isinstance(item, String):
        return bytes(item).decode("ascii", "replace").upper()
    raise SortSyntaxError(f"{what} must be an atom")


def parse_sort_criteria(items: Any) -> SortCriteria:
    """The token list of `sort-criteria` (the parenthesised list, already a
    Python list of atoms as tokenizer.py produces it; str atoms work too).

    RFC 5256 §5: sort-criteria = "(" sort-criterion *(SP sort-criterion) ")"
                 sort-criterion = ["REVERSE" SP] sort-key
    RFC 5957 §4 adds "DISPLAYFROM" / "DISPLAYTO" to sort-key.
    """
    if not isinstance(items, (list, tuple)):
        raise SortSyntaxError("sort criteria must be a parenthesised list")
    if not items:
        raise SortSyntaxError("empty sort criteria")
    out: list[SortCriterion] = []
    reverse = False
    for item in items:
        name = _atom_text(item, "sort criterion")
        if name == "REVERSE":
            if reverse:
                raise SortSyntaxError("REVERSE REVERSE is not a sort criterion")
            reverse = True
            continue
        if name not in SORT_KEYS:
            raise SortSyntaxError(f"unknown sort key {name[:30]}")
        out.append(SortCriterion(name, reverse))
        reverse = False
    if reverse:
        raise SortSyntaxError("REVERSE must be followed by a sort key")
    return SortCriteria(tuple(out))


# --- keys --------------------------------------------------------------------------------


class _Titlecase(dict[int, str]):
    """str.translate table: a code point -> its simple titlecase mapping
    (itself when Unicode gives none, or only a multi-character one such as
    "ß" -> "Ss"), filled as characters are met; at most _TITLECASE_CACHE
    entries are kept, so hostile text cannot grow it without bound."""

    def __missing__(self, code: int) -> str:
        ch = chr(code)
        title = ch.title()
        value = title if len(title) == 1 else ch
        if len(self) < _TITLECASE_CACHE:
            self[code] = value
        return value


_TITLECASE_CACHE = 8192
_TITLECASE = _Titlecase()


def collation_key(text: str) -> str:
    """i;unicode-casemap (RFC 5051 §2): each character to its titlecase,
    then NFKD; compared by code point (the same order as i;octet on UTF-8).
    Titlecase, not case folding, puts "[" and "_" after the letters, as
    Dovecot and Cyrus sort them.  The titlecase is applied once more after
    the decomposition, so compatibility forms compare equal ("ﬁ" = "FI")."""
    if text.isascii():
        return text.upper()  # ASCII titlecase is upper case
    decomposed = unicodedata.normalize("NFKD", text.translate(_TITLECASE))
    return decomposed.upper() if decomposed.isascii() else decomposed.translate(_TITLECASE)


def subject_key(headers: dict[str, str]) -> str:
    """The base subject of cached headers, not yet collated.  Indexes built
    before ":base-subject" existed fall back to computing it from "subject"."""
    base = headers.get(":base-subject")
    if base is None:
        subject = headers.get("subject")
        base = base_subject(subject)[0] if subject is not None else ""
    return base


def sent_date(headers: dict[str, str], internaldate: float) -> float:
    """RFC 5256 §2.2: the Date field in UTC seconds, else the INTERNALDATE."""
    raw = headers.get(":sent-ts")
    if raw:
        try:
            return int(raw)
        except ValueError:
            pass
    return internaldate


_STRING_KEY_FIELDS = {
    "FROM": ":sort-from", "TO": ":sort-to", "CC": ":sort-cc",
    "DISPLAYFROM": ":display-from", "DISPLAYTO": ":display-to",
}


def _header_value(key: str, record: MessageRecord, headers: dict[str, str]) -> Any:
    if key == "DATE":
        return sent_date(headers, record.internaldate)
    if key == "SUBJECT":
        return collation_key(subject_key(headers))
    return collation_key(headers.get(_STRING_KEY_FIELDS[key], ""))


def key_values(criteria: SortCriteria, record: MessageRecord, headers: dict[str, str]) -> list[Any]:
    """The value of each criterion for one message, as sort_uids compares
    them (CONTEXT=SORT places a new message with these, esort.py)."""
    out: list[Any] = []
    for criterion in criteria.criteria:
        if criterion.key == "ARRIVAL":
            out.append(record.internaldate)
        elif criterion.key == "SIZE":
            out.append(record.size)
        else:
            out.append(_header_value(criterion.key, record, headers))
    return out


def cached_headers(folder: Any, uids: Sequence[int]) -> Iterator[dict[str, str]]:
    """The cached headers of uids, in that order ({} for a message gone
    meanwhile), read HEADER_BATCH at a time with folder.headers_many.

    A generator, so that callers keep what they need of each batch and the
    header dicts of 100,000 messages are never all in memory at once.
    """
    read_many: Callable[[list[int]], Iterable[tuple[int, dict[str, str]]]] | None = getattr(
        folder, "headers_many", None)
    empty: dict[str, str] = {}
    for start in range(0, len(uids), HEADER_BATCH):
        batch = list(uids[start:start + HEADER_BATCH])
        if read_many is not None:
            found = dict(read_many(batch))
        else:  # IFolder.headers alone (small in-memory folders)
            found = {}
            for uid in batch:
                try:
                    found[uid] = folder.headers(uid)
                except Exception:  # NoSuchMessage: expunged by another session
                    continue
        for uid in batch:
            yield found.get(uid, empty)


def sort_uids(folder: Any, records: Sequence[MessageRecord], criteria: SortCriteria, *,
              search_result_uids: Iterable[int]) -> list[int]:
    """The UIDs of search_result_uids that are in records, in sort order."""
    wanted = set(search_result_uids)
    chosen = [r for r in records if r.uid in wanted]  # sequence order
    if not chosen:
        return []
    columns: dict[str, list[Any]] = {}
    for criterion in criteria.criteria:
        if criterion.key == "ARRIVAL":
            columns["ARRIVAL"] = [r.internaldate for r in chosen]
        elif criterion.key == "SIZE":
            columns["SIZE"] = [r.size for r in chosen]
        else:
            columns[criterion.key] = []
    header_keys = [(key, column) for key, column in columns.items() if key not in _RECORD_KEYS]
    if header_keys:
        for record, headers in zip(chosen, cached_headers(folder, [r.uid for r in chosen]), strict=True):
            for key, column in header_keys:
                column.append(_header_value(key, record, headers))
    # Stable sorts from the least significant criterion to the most: equal
    # keys keep the previous order, down to the sequence order we started
    # from.  list.sort(reverse=True) keeps equal items in their order, which
    # is exactly RFC 5256's "REVERSE does not affect the implicit sequence
    # number criterion".
    order = list(range(len(chosen)))
    for criterion in reversed(criteria.criteria):
        order.sort(key=columns[criterion.key].__getitem__, reverse=criterion.reverse)
    return [chosen[i].uid for i in order]


# --- ESORT (RFC 5267 §3) ----------------------------------------------------------------------


def parse_esort_returns(items: Any) -> frozenset[str]:
    """`RETURN (...)` options of an extended SORT: MIN, MAX, ALL, COUNT,
    UPDATE, CONTEXT.  Without a result option ALL is meant (RFC 4731 §3.1,
    which RFC 5267 §3 builds on; `RETURN (UPDATE)` answers ALL, §4.1)."""
    if not isinstance(items, (list, tuple)):
        raise SortSyntaxError("return options must be a parenthesised list")
    out = set()
    for item in items:
        name = _atom_text(item, "return option")
        if name not in ESORT_RETURNS and name not in _CONTEXT_RETURNS:
            raise SortSyntaxError(f"unsupported SORT return option {name[:30]}")
        out.add(name)
    if not out & ESORT_RETURNS:
        out.add("ALL")
    return frozenset(out)


def sort_order_set(numbers: Sequence[int]) -> str:
    """numbers in their given order as a sequence-set; only ascending runs of
    consecutive numbers become ranges ("4,1:3,7,6").  RFC 5267 §3.2: ranges
    in ESORT results expand in increasing order, and servers SHOULD NOT send
    a descending range such as 12:10."""
    out: list[str] = []
    i, n = 0, len(numbers)
    while i < n:
        j = i
        while j + 1 < n and numbers[j + 1] == numbers[j] + 1:
            j += 1
        out.append(str(numbers[i]) if i == j else f"{numbers[i]}:{numbers[j]}")
        i = j + 1
    return ",".join(out)


def esort_result(numbers: Sequence[int], returns: Iterable[str]) -> list[tuple[str, str]]:
    """(name, value) pairs of an ESEARCH response to SORT RETURN (...).

    numbers: message numbers or UIDs in sort order.  RFC 5267 §3.1: MIN and
    MAX are the first and last message *in sort order*; ALL is every number
    in sort order; COUNT is always present when asked, even 0 (RFC 4731
    §3.1), the others are left out of an empty result.
    """
    wanted = set(returns)
    out: list[tuple[str, str]] = []
    if numbers:
        if "MIN" in wanted:
            out.append(("MIN", str(numbers[0])))
        if "MAX" in wanted:
            out.append(("MAX", str(numbers[-1])))
        if "ALL" in wanted:
            out.append(("ALL", sort_order_set(numbers)))
    if "COUNT" in wanted:
        out.append(("COUNT", str(len(numbers))))
    return out


def esort_response(tag: bytes, numbers: Sequence[int], returns: Iterable[str], *, uid: bool) -> bytes:
    """The untagged data (without "* ") answering SORT RETURN (...):
    ``ESEARCH (TAG "a1") UID MIN 4 MAX 2 ALL 4,1:2 COUNT 3`` (RFC 4731 §3.1)."""
    quoted_tag = b'"' + tag.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    parts = [b"ESEARCH (TAG " + quoted_tag + b")"]
    if uid:
        parts.append(b"UID")
    parts.extend(f"{name} {value}".encode("ascii") for name, value in esort_result(numbers, returns))
    return b" ".join(parts)
