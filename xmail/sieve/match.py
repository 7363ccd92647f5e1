# -*- test-case-name: tests.sieve.test_match -*-
"""Comparators and match types (RFC 5228 §2.7, RFC 4790, RFC 5231,
RFC 5229 §3.2), in bounded time.

- Comparators: i;octet, i;ascii-casemap (the default; folds ASCII letters
  only, RFC 4790 §9.2), i;ascii-numeric (RFC 4790 §9.1: the number of the
  leading digits, a value without one is greater than every number).
- :is, :contains, :matches, and the relational :value / :count.
- `:matches` never backtracks exponentially: the pattern is split at its
  `*`s into segments and each segment is placed at its earliest position
  (str.find for literal segments), which is the RFC 5229 §3.2 answer too:
  each `*` takes the shortest text that lets the rest match, left to
  right, the last one what remains.  Cost: O(len(value) × len(segment))
  at worst for segments holding `?`, and values are cut at MAX_VALUE
  (a body test's at its BODY_LIMIT).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

MAX_VALUE = 64 * 1024       # characters of one value matched against a key
MAX_MATCH_VARIABLES = 10    # ${0}..${9} (RFC 5229 §3.2: at least these)

COMPARATORS = ("i;octet", "i;ascii-casemap", "i;ascii-numeric")
_ASCII_FOLD = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_STAR, _ANY = object(), object()


def fold(text: str, comparator: str) -> str:
    """The form a comparator compares (i;ascii-casemap: ASCII letters folded)."""
    return text.translate(_ASCII_FOLD) if comparator == "i;ascii-casemap" else text


def numeric(text: str) -> int | None:
    """RFC 4790 §9.1.1: the leading digits' value; None is "positive infinity"."""
    end = 0
    while end < len(text) and "0" <= text[end] <= "9":
        end += 1
    return int(text[:end]) if end else None


def order(a: str, b: str, comparator: str) -> int:
    """-1, 0, 1 as a sorts before, with or after b (RFC 5231 §4)."""
    if comparator == "i;ascii-numeric":
        x, y = numeric(a), numeric(b)
        if x is None or y is None:
            return 0 if x is y else (1 if x is None else -1)
        return (x > y) - (x < y)
    a, b = fold(a, comparator), fold(b, comparator)
    return (a > b) - (a < b)


_RELATIONS = {
    "gt": lambda o: o > 0, "ge": lambda o: o >= 0, "lt": lambda o: o < 0,
    "le": lambda o: o <= 0, "eq": lambda o: o == 0, "ne": lambda o: o != 0,
}


def relate(a: str, b: str, relation: str, comparator: str) -> bool:
    return _RELATIONS[relation](order(a, b, comparator))


def cost(values: Sequence[str], keys: Sequence[str], match: str, limit: int = MAX_VALUE) -> int:
    """An upper bound of the characters `test` looks at: the interpreter
    charges it to a per-message budget, so that many keys times a large
    header cannot hold a worker for long."""
    if match == "count":
        return len(keys)
    chars = sum(min(len(v), limit) for v in values) + len(values)
    per_key = sum((1 + k.count("?") if match == "matches" else 1) for k in keys)
    return chars * max(per_key, 1)


def test(values: Sequence[str], keys: Iterable[str], match: str = "is",
         comparator: str = "i;ascii-casemap", relation: str | None = None,
         limit: int = MAX_VALUE) -> tuple[bool, list[str] | None]:
    """RFC 5228 §2.7.1: true when any value matches any key.  Returns the
    match variables of the first :matches success (RFC 5229 §3.2) else None."""
    keys = keys if isinstance(keys, list | tuple) else list(keys)
    relation = relation or "eq"
    if match == "count":
        # RFC 5231 §4.1: the number of values, compared as text.
        count = str(len(values))
        return any(relate(count, key, relation, comparator) for key in keys), None
    if match in ("is", "contains") and comparator != "i;ascii-numeric":
        folded_keys = [fold(key, comparator) for key in keys]
        for value in values:
            folded = fold(value[:limit], comparator)
            for key in folded_keys:
                if (folded == key) if match == "is" else (key in folded):
                    return True, None
        return False, None
    for value in values:
        value = value[:limit]
        for key in keys:
            if match == "matches":
                captured = wildcard(key, value, comparator, limit)
                if captured is not None:
                    return True, captured
            elif match == "is":  # i;ascii-numeric equality
                if order(value, key, comparator) == 0:
                    return True, None
            elif match == "value":
                if relate(value, key, relation, comparator):
                    return True, None
    return False, None


def _parse(pattern: str) -> list[object]:
    """`*`, `?`, and literal characters; "\\" quotes the next one (RFC 5228 §2.7.1)."""
    out: list[object] = []
    i, n = 0, len(pattern)
    while i < n:
        c = pattern[i]
        if c == "\\" and i + 1 < n:
            out.append(pattern[i + 1])
            i += 2
            continue
        out.append(_STAR if c == "*" else _ANY if c == "?" else c)
        i += 1
    return out


def _segment_at(segment: list[object], value: str, at: int) -> bool:
    return all(item is _ANY or value[at + k] == item for k, item in enumerate(segment))


def _find(segment: list[object], value: str, start: int, last: int) -> int:
    """Earliest position p in [start, last] where the segment matches, or -1."""
    if last < start:
        return -1
    if all(item is not _ANY for item in segment):
        literal = "".join(item for item in segment if isinstance(item, str))
        return value.find(literal, start, last + len(literal))
    # Anchor on the longest literal run, verify the rest around it.
    best, best_at, run, run_at = "", 0, [], 0
    for k, item in enumerate([*segment, _ANY]):
        if isinstance(item, str):
            if not run:
                run_at = k
            run.append(item)
        else:
            if len(run) > len(best):
                best, best_at = "".join(run), run_at
            run = []
    if not best:
        return start  # only `?`s: any place with room
    p = value.find(best, start + best_at, last + best_at + len(best))
    while p >= 0:
        if _segment_at(segment, value, p - best_at):
            return p - best_at
        p = value.find(best, p + 1, last + best_at + len(best))
    return -1


def wildcard(pattern: str, value: str, comparator: str = "i;ascii-casemap",
             limit: int = MAX_VALUE) -> list[str] | None:
    """:matches (RFC 5228 §2.7.1) -> the match variables (RFC 5229 §3.2:
    ${0} the whole value, then one per wildcard in order) or None."""
    value = value[:limit]
    items = _parse(fold(pattern, comparator))
    folded = fold(value, comparator)
    segments: list[list[object]] = [[]]
    for item in items:
        if item is _STAR:
            segments.append([])
        else:
            segments[-1].append(item)
    first, last = segments[0], segments[-1]
    if len(segments) == 1:
        if len(first) != len(folded) or not _segment_at(first, folded, 0):
            return None
        return [value, *(value[k] for k, item in enumerate(first) if item is _ANY)][:MAX_MATCH_VARIABLES]
    if len(first) + len(last) > len(folded) or not _segment_at(first, folded, 0):
        return None
    tail = len(folded) - len(last)
    if not _segment_at(last, folded, tail):
        return None
    captures: list[str] = [value, *(value[k] for k, item in enumerate(first) if item is _ANY)]
    cur = len(first)
    for segment in segments[1:-1]:
        p = _find(segment, folded, cur, tail - len(segment))
        if p < 0:
            return None
        captures.append(value[cur:p])                                   # the `*` before it
        captures.extend(value[p + k] for k, item in enumerate(segment) if item is _ANY)
        cur = p + len(segment)
    captures.append(value[cur:tail])                                    # the last `*`
    captures.extend(value[tail + k] for k, item in enumerate(last) if item is _ANY)
    return captures[:MAX_MATCH_VARIABLES]
