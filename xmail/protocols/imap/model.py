"""Typed IMAP command arguments shared by the grammar, FETCH and SEARCH.

grammar.py turns tokens into these; fetch.py and search.py consume them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# --- sequence sets (RFC 3501 §9 "sequence-set") ------------------------------

STAR = -1  # "*": the largest number in use


@dataclass(frozen=True, slots=True)
class SeqRange:
    low: int  # may be STAR
    high: int  # may be STAR; low > high allowed ("4:2" means 2:4)


@dataclass(frozen=True, slots=True)
class SeqSet:
    ranges: tuple[SeqRange, ...]
    # "$": the result of the previous SEARCH (RFC 5182), unused for now.
    saved: bool = False


# --- FETCH (RFC 3501 §6.4.5) ------------------------------------------------


@dataclass(frozen=True, slots=True)
class Section:
    """BODY[<part>.<text>] e.g. part=(1, 2), text="HEADER.FIELDS", fields=("FROM",)."""

    part: tuple[int, ...] = ()
    # "", "HEADER", "HEADER.FIELDS", "HEADER.FIELDS.NOT", "TEXT", "MIME"
    text: str = ""
    fields: tuple[str, ...] = ()  # upper-cased field names for HEADER.FIELDS(.NOT)


@dataclass(frozen=True, slots=True)
class FetchAtt:
    """One fetch attribute.

    name: "FLAGS", "UID", "INTERNALDATE", "RFC822.SIZE", "ENVELOPE", "BODY"
    (the non-extensible structure), "BODYSTRUCTURE", "RFC822",
    "RFC822.HEADER", "RFC822.TEXT", "BODY[]" (with section/partial/peek),
    "MODSEQ" (RFC 7162); "BINARY[]" (with section.part/partial/peek) and
    "BINARY.SIZE" (with section.part), RFC 3516.
    """

    name: str
    section: Section | None = None  # only for name == "BODY[]"
    partial: tuple[int, int] | None = None  # (origin, count)
    peek: bool = False

    def response_name(self) -> str:
        """The name as echoed in the FETCH response, e.g. BODY[1.HEADER]<0>."""
        if self.name in ("BINARY[]", "BINARY.SIZE"):
            # RFC 3516 §4.2: "BINARY" section-binary ["<" number ">"]
            part = ".".join(str(p) for p in self.section.part) if self.section else ""
            out = f"{self.name[:-2] if self.name == 'BINARY[]' else self.name}[{part}]"
            if self.partial is not None:
                out += f"<{self.partial[0]}>"
            return out
        if self.name != "BODY[]" or self.section is None:
            return self.name
        sec = ".".join(str(p) for p in self.section.part)
        if self.section.text:
            sec = f"{sec}.{self.section.text}" if sec else self.section.text
        if self.section.fields:
            sec += " (" + " ".join(self.section.fields) + ")"
        out = f"BODY[{sec}]"
        if self.partial is not None:
            out += f"<{self.partial[0]}>"
        return out


# --- SEARCH (RFC 3501 §6.4.4) -------------------------------------------------


@dataclass(frozen=True, slots=True)
class SearchKey:
    """A leaf key: name is the upper-cased RFC 3501 key ("ALL", "ANSWERED",
    "BCC", "BEFORE", "BODY", "CC", "DELETED", "DRAFT", "FLAGGED", "FROM",
    "HEADER", "KEYWORD", "LARGER", "NEW", "OLD", "ON", "RECENT", "SEEN",
    "SENTBEFORE", "SENTON", "SENTSINCE", "SINCE", "SMALLER", "SUBJECT",
    "TEXT", "TO", "UID", "UNANSWERED", "UNDELETED", "UNDRAFT", "UNFLAGGED",
    "UNKEYWORD", "UNSEEN", "MODSEQ") or "SEQSET" for a bare sequence set.

    args: str for strings (decoded with the command's CHARSET), a
    datetime.date for dates, int for sizes/modseq, SeqSet for UID/SEQSET,
    (field-name, string) for HEADER.
    """

    name: str
    args: tuple[object, ...] = ()


@dataclass(frozen=True, slots=True)
class SearchNot:
    key: SearchExpr


@dataclass(frozen=True, slots=True)
class SearchOr:
    left: SearchExpr
    right: SearchExpr


@dataclass(frozen=True, slots=True)
class SearchAnd:
    """A parenthesised list, and the top level of a SEARCH command."""

    keys: tuple[SearchExpr, ...] = field(default_factory=tuple)


SearchExpr = SearchKey | SearchNot | SearchOr | SearchAnd


def uses_key(expr: SearchExpr, name: str) -> bool:
    """Does the search program contain a key called name (MODSEQ, SEQSET ...)?"""
    if isinstance(expr, SearchKey):
        return expr.name == name
    if isinstance(expr, SearchNot):
        return uses_key(expr.key, name)
    if isinstance(expr, SearchOr):
        return uses_key(expr.left, name) or uses_key(expr.right, name)
    if isinstance(expr, SearchAnd):
        return any(uses_key(k, name) for k in expr.keys)
    return False
