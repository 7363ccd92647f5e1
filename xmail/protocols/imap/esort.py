# -*- test-case-name: tests.protocols.test_imap_esort -*-
"""CONTEXT=SORT (RFC 5267 §4): `SORT RETURN (UPDATE)` keeps a sorted
result current, telling the client where messages leave and enter it.

    C: t1 UID SORT RETURN (UPDATE) (SUBJECT) UTF-8 UNSEEN
    S: * ESEARCH (TAG "t1") UID ALL 5,3,9
    ...another session marks 3 \\Seen, mail 12 (subject between 5's and 9's) arrives...
    S: * 12 EXISTS
    S: * ESEARCH (TAG "t1") UID REMOVEFROM (2 3)
    S: * ESEARCH (TAG "t1") UID ADDTO (2 12)

Positions (RFC 5267 §4.3 context-position) are 1-based places in the
sorted result.  Each line names one run of consecutive positions: its
first position and the messages of the run in sort order.  Removals go out
first, highest position first, each position counted in the result as it
stands before that line; then additions, lowest position first, each
position counted in the result after that line.  A client that applies
the lines in the order received ends with the server's result.

Sort keys never change (RFC 5256 §3: ARRIVAL, DATE, SIZE and the header
keys are fixed once a message is stored), so only membership moves:
messages that stay keep their relative order.  A new member is placed by
binary search over the current result, reading the keys of O(log n)
members (bounded work per change); when many arrive at once the result is
sorted again with sort_uids instead.  Expunged messages leave silently:
EXPUNGE / VANISHED already tell the client (as for CONTEXT=SEARCH).
"""

from __future__ import annotations

import functools
from typing import Any

from xmail.protocols.imap import sort as sortmod
from xmail.protocols.imap.sort import SortCriteria


def _runs(positions: list[tuple[int, int]]) -> list[tuple[int, list[int]]]:
    """(position, uid) pairs ascending by position -> runs of consecutive
    positions: (first position, uids in order)."""
    runs: list[tuple[int, list[int]]] = []
    for pos, uid in positions:
        if runs and runs[-1][0] + len(runs[-1][1]) == pos:
            runs[-1][1].append(uid)
        else:
            runs.append((pos, [uid]))
    return runs


def removals(order: list[int], removed: set[int]) -> list[tuple[int, list[int]]]:
    """Runs to remove, highest first, positions in `order` (before removal);
    `order` loses them."""
    positions = [(i + 1, uid) for i, uid in enumerate(order) if uid in removed]
    order[:] = [uid for uid in order if uid not in removed]
    return list(reversed(_runs(positions)))


class _Keys:
    """Sort keys of single messages, read on demand and kept for one pass."""

    def __init__(self, folder: Any, criteria: SortCriteria):
        self.folder = folder
        self.criteria = criteria
        self.cache: dict[int, list[Any]] = {}

    def load(self, uids: list[int]) -> None:
        records = {r.uid: r for r in self.folder.records(uids)}
        wanted = [uid for uid in uids if uid in records]
        for uid, headers in zip(wanted, sortmod.cached_headers(self.folder, wanted), strict=True):
            self.cache[uid] = sortmod.key_values(self.criteria, records[uid], headers)

    def of(self, uid: int) -> list[Any]:
        if uid not in self.cache:
            self.load([uid])
        return self.cache.get(uid) or []

    def compare(self, a: int, b: int) -> int:
        ka, kb = self.of(a), self.of(b)
        for criterion, va, vb in zip(self.criteria.criteria, ka, kb, strict=False):
            if va != vb:
                less = va < vb
                return (-1 if less else 1) * (-1 if criterion.reverse else 1)
        # RFC 5256 §3: ties keep ascending sequence order (= UID order),
        # REVERSE or not.
        return (a > b) - (a < b)


def additions(folder: Any, criteria: SortCriteria, order: list[int], added: list[int]
              ) -> list[tuple[int, list[int]]]:
    """Runs to add, lowest first, positions in the result after each; `order`
    (the current sorted result) gains them."""
    if not added:
        return []
    keys = _Keys(folder, criteria)
    new_order: list[int] = []
    if len(added) * max(1, len(order)).bit_length() > len(order):
        # Many at once: one batched sort beats a binary search each.
        members = set(order) | set(added)
        records = folder.records(sorted(members))
        if len(records) == len(members):  # else one left meanwhile: place one by one
            new_order = sortmod.sort_uids(folder, records, criteria, search_result_uids=members)
    if not new_order:
        keys.load(added)
        new_order = list(order)
        for uid in sorted(added, key=functools.cmp_to_key(keys.compare)):
            lo, hi = 0, len(new_order)
            while lo < hi:
                mid = (lo + hi) // 2
                if keys.compare(new_order[mid], uid) < 0:
                    lo = mid + 1
                else:
                    hi = mid
            new_order.insert(lo, uid)
    fresh = set(added)
    positions = [(i + 1, uid) for i, uid in enumerate(new_order) if uid in fresh]
    order[:] = new_order
    return _runs(positions)
