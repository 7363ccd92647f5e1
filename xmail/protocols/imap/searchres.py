# -*- test-case-name: tests.protocols.test_imap_extensions -*-
"""SEARCHRES (RFC 5182): `SEARCH RETURN (SAVE)` and the `$` sequence set.

The saved result is a set of UIDs that belongs to the selected mailbox it
was made in (RFC 5182 §2.1): it is kept with the session's SelectedFolder
object, so SELECT, EXAMINE, CLOSE and UNSELECT — which all replace or drop
that object — reset it to empty without a line in their handlers.  An
expunged message leaves `$` because `$` is resolved against the current UIDs
(§2.1: "the message is removed from the saved result").

`expand(session, request)` runs before every handler (session.execute): it
turns a `$` (model.SeqSet with saved=True) in the request's sequence set or
search keys into the saved UIDs — as UIDs for UID commands and `UID $`, as
current message numbers for the others.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from xmail.protocols.imap.model import SearchAnd, SearchKey, SearchNot, SearchOr, SeqRange, SeqSet

_EMPTY: frozenset[int] = frozenset()


def saved_uids(session: Any) -> frozenset[int]:
    """The saved result of the selected mailbox; empty if there is none."""
    saved = getattr(session, "search_result", None)
    if saved is None or session.selected is None or saved[0] is not session.selected:
        return _EMPTY
    return saved[1]


def save(session: Any, uids: Any) -> None:
    session.search_result = (session.selected, frozenset(uids))


def reset(session: Any) -> None:
    """RFC 5182 §2.1: a SEARCH with SAVE that fails leaves `$` empty."""
    session.search_result = None


def what_to_save(returns: frozenset[str], uids: list[int]) -> list[int]:
    """RFC 5182 §2.1: SAVE with MIN and/or MAX alone (no ALL, no COUNT)
    saves just those; otherwise the whole result.  `uids` ascending."""
    if not uids or returns & {"ALL", "COUNT"} or not returns & {"MIN", "MAX"}:
        return uids
    out = []
    if "MIN" in returns:
        out.append(uids[0])
    if "MAX" in returns:
        out.append(uids[-1])
    return out


def _to_seqset(numbers: list[int]) -> SeqSet:
    ranges = []
    start = prev = None
    for n in sorted(numbers):
        if start is not None and n == prev + 1:
            prev = n
            continue
        if start is not None:
            ranges.append(SeqRange(start, prev))
        start = prev = n
    if start is not None:
        ranges.append(SeqRange(start, prev))
    return SeqSet(tuple(ranges))


def _concrete(session: Any, by_uid: bool) -> SeqSet:
    uids = saved_uids(session)
    if by_uid or not uids:
        return _to_seqset(list(uids))
    view = session.selected
    return _to_seqset([seq for seq in map(view.seq_of, uids) if seq])


def _uses_saved(seqset: Any) -> bool:
    return isinstance(seqset, SeqSet) and seqset.saved


def _expand_key(session: Any, expr: Any) -> Any:
    if isinstance(expr, SearchKey):
        if expr.name in ("SEQSET", "UID") and expr.args and _uses_saved(expr.args[0]):
            return SearchKey(expr.name, (_concrete(session, expr.name == "UID"),))
        return expr
    if isinstance(expr, SearchNot):
        return SearchNot(_expand_key(session, expr.key))
    if isinstance(expr, SearchOr):
        return SearchOr(_expand_key(session, expr.left), _expand_key(session, expr.right))
    if isinstance(expr, SearchAnd):
        return SearchAnd(tuple(_expand_key(session, k) for k in expr.keys))
    return expr


def expand(session: Any, request: Any) -> Any:
    """The request with `$` replaced by the saved result (cheap when unused)."""
    args = request.args
    if _uses_saved(args):  # UID EXPUNGE $
        return dataclasses.replace(request, args=_concrete(session, True))
    if _uses_saved(getattr(args, "seqset", None)):  # FETCH, STORE, COPY, MOVE
        args = dataclasses.replace(args, seqset=_concrete(session, request.uid))
    if isinstance(getattr(args, "key", None), SearchAnd) and session.selected is not None:
        args = dataclasses.replace(args, key=_expand_key(session, args.key))  # SEARCH, SORT, THREAD
    if args is request.args:
        return request
    return dataclasses.replace(request, args=args)
