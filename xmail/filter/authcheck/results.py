# -*- test-case-name: tests.filter.authcheck.test_results -*-
"""The one Authentication-Results field (RFC 8601) a message gets.

Property values that come from the client -- HELO, MAIL FROM, the From
domain, d= and s= -- are written as RFC 8601 §2.2 `pvalue`s: a token
when they are made only of safe characters, otherwise a quoted-string
(RFC 5322 §3.2.4) from which every control character (CR, LF), non-ASCII
octet, double quote, backslash, ";", "(" and ")" is dropped: nothing a
client sends can end the field, add a field, start a resinfo or a comment.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

FIELD = "Authentication-Results"
MAX_VALUE = 255  # characters of one property value kept (a 10k HELO is cut)
LINE = 78        # RFC 5322 §2.1.1: lines SHOULD be no longer than 78 characters

# RFC 2045 token characters minus "/" and "=", plus "@" between local
# part and domain (RFC 8601 §2.2 allows [local-part "@"] domain-name).
_SAFE = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_+@!#$%&'*^`{|}~")


def pvalue(value: str) -> str:
    """A property value safe in the field: token, or quoted-string."""
    value = value[:MAX_VALUE]
    if value and all(c in _SAFE for c in value) and value.count("@") <= 1 and not value.endswith("@"):
        return value
    return pvalue_quoted(value)


def resinfo(method: str, result: str, props: Sequence[tuple[str, str]] = (),
            reason: str = "") -> str:
    """`method=result [reason="..."] ptype.property=value ...` (§2.2).
    method and result are ours (fixed keywords); reason and values are
    escaped."""
    words = [f"{method}={result}"]
    if reason:
        words.append("reason=" + pvalue_quoted(reason))
    words.extend(f"{name}={pvalue(value)}" for name, value in props)
    return " ".join(words)


def pvalue_quoted(value: str) -> str:
    """Always a quoted-string.  Only printable ASCII is kept, and not even
    all of that: `"` and `\\` (which would need escaping) and `;`, `(`, `)`
    (harmless inside quotes to an RFC 8601 parser, not to the many naive
    ones that split on ";") are dropped too; runs of spaces become one, so
    a fold never leaves a line of white space only."""
    kept = "".join(c for c in value[:MAX_VALUE] if " " <= c <= "~" and c not in _DROPPED)
    return '"' + " ".join(kept.split()) + '"'


_DROPPED = frozenset('"\\;()')


def field_value(authserv_id: str, results: Iterable[str]) -> str:
    """authserv-id; resinfo; resinfo ... folded (RFC 5322 §2.2.3) at a
    space before a word that would pass LINE characters; "none" when there
    are no results (§2.2).  The fold is CRLF + the space it replaces, so
    unfolding gives back exactly the unfolded text (inside a quoted-string
    too)."""
    lines: list[str] = []
    line = f"{FIELD}: {pvalue(authserv_id)}"
    for item in list(results) or ["none"]:
        line += ";"
        for word in item.split(" "):
            if len(line) + 1 + len(word) > LINE:
                lines.append(line)
                line = " " + word
            else:
                line += " " + word
    lines.append(line)
    return "\r\n".join(lines)[len(FIELD) + 2:]
