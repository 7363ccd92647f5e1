# -*- test-case-name: tests.protocols.test_imap_ext_grammar -*-
"""ESEARCH / ESORT result items (RFC 4731 §3.1, RFC 5267 §3.2) with PARTIAL
(RFC 9394 §3), shared by SEARCH, SORT and MULTISEARCH's ESEARCH.

    esearch_items(numbers, returns, partial) -> [b"MIN 2", b"PARTIAL (1:2 4,7)", b"COUNT 9"]

`numbers` are the matches in result order (ascending for SEARCH, sort
order for SORT); sets keep that order, runs compressed ("3:5").
"""

from __future__ import annotations

from collections.abc import Iterable


def ordered_set(numbers: Iterable[int]) -> str:
    """Numbers in the given order as a sequence-set, runs compressed."""
    out: list[str] = []
    start = prev = None
    for n in numbers:
        if start is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            out.append(str(start) if start == prev else f"{start}:{prev}")
        start = prev = n
    if start is not None:
        out.append(str(start) if start == prev else f"{start}:{prev}")
    return ",".join(out)


def partial_slice(numbers: list[int], partial: tuple[int, int]) -> list[int]:
    """RFC 9394 §3: positions low..high (1-based) of the result; negative
    positions count from its end (-1:-10 is the last ten), the slice keeps
    the result's order."""
    low, high = partial
    n = len(numbers)
    if low > 0:
        return numbers[low - 1:high]
    start = max(0, n + high)  # high is the farther one from the end: -10
    end = max(0, n + low + 1)
    return numbers[start:end]


def _range_text(partial: tuple[int, int]) -> str:
    return f"{partial[0]}:{partial[1]}"


def esearch_items(numbers: list[int], returns: frozenset[str], partial: tuple[int, int] | None = None
                  ) -> list[bytes]:
    """The items after the correlator (and UID) in RFC 4731 order."""
    items = []
    if numbers:
        if "MIN" in returns:
            items.append(b"MIN %d" % min(numbers))
        if "MAX" in returns:
            items.append(b"MAX %d" % max(numbers))
        if "ALL" in returns:
            items.append(b"ALL " + ordered_set(numbers).encode())
    if partial is not None:
        # RFC 9394 §3: "PARTIAL" SP "(" partial-range SP partial-results ")",
        # partial-results = sequence-set / "NIL"
        chosen = partial_slice(numbers, partial)
        items.append(b"PARTIAL (%s %s)" % (_range_text(partial).encode(),
                                            ordered_set(chosen).encode() if chosen else b"NIL"))
    if "COUNT" in returns:
        items.append(b"COUNT %d" % len(numbers))
    return items
