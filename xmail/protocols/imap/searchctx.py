# -*- test-case-name: tests.protocols.test_imap_extensions -*-
"""CONTEXT=SEARCH (RFC 5267 §4): `SEARCH RETURN (UPDATE)` keeps a search
result current; the server tells the client what enters or leaves it.

    C: t1 UID SEARCH RETURN (UPDATE) UNSEEN
    S: * ESEARCH (TAG "t1") UID ALL 3:5
    S: t1 OK SEARCH completed
    ...another session marks 4 \\Seen, mail 9 arrives...
    S: * 9 EXISTS
    S: * ESEARCH (TAG "t1") UID REMOVEFROM (0 4)
    S: * ESEARCH (TAG "t1") UID ADDTO (0 9)
    C: t2 CANCELUPDATE "t1"

A context belongs to the SelectedFolder it was made in (any change of
selection ends it) and is re-evaluated where untagged data goes out anyway —
after every command and while IDLE (session.flush_changes) — over the
messages whose MODSEQ moved since it last looked (RFC 7162's log, so the
work follows the changes, not the folder size; keys on sequence numbers
re-evaluate the whole view).  Position is always 0: a SEARCH result is a
set (§4.3).  Expunged messages leave the result with the EXPUNGE/VANISHED
the client receives anyway; no REMOVEFROM is sent for them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from xmail.protocols.imap import esort
from xmail.protocols.imap import search as searchmod
from xmail.protocols.imap.model import SearchAnd, uses_key
from xmail.protocols.imap.response import quoted
from xmail.protocols.imap.results import ordered_set
from xmail.protocols.imap.sort import sort_order_set

MAX_CONTEXTS = 10  # updating searches per session; more get NO [NOUPDATE]


@dataclass(slots=True)
class SearchContext:
    tag: bytes
    key: SearchAnd
    uid: bool
    view: Any  # the SelectedFolder it belongs to
    result: set[int]  # UIDs
    modseq: int  # changes up to this MODSEQ are reflected in result
    criteria: Any = None  # SortCriteria of a SORT RETURN (UPDATE) (esort.py), else None
    order: list[int] | None = None  # a SORT context's result in sort order


def _contexts(session: Any) -> list[SearchContext]:
    contexts = getattr(session, "search_contexts", None)
    if contexts is None:
        contexts = session.search_contexts = []
    # A change of selection ends every context (RFC 5267 §4.1).
    if contexts and any(c.view is not session.selected for c in contexts):
        contexts[:] = [c for c in contexts if c.view is session.selected]
    return contexts


def start(session: Any, tag: bytes, key: SearchAnd, uid: bool, uids: list[int], modseq: int,
          criteria: Any = None) -> bool:
    """Remember a SEARCH (or, with criteria, SORT) RETURN (UPDATE); False
    when the session has too many.  For SORT, uids are in sort order."""
    contexts = _contexts(session)
    if len(contexts) >= MAX_CONTEXTS:
        return False
    contexts[:] = [c for c in contexts if c.tag != tag]
    order = list(uids) if criteria is not None else None
    contexts.append(SearchContext(tag, key, uid, session.selected, set(uids), modseq, criteria, order))
    return True


def cancel(session: Any, tags: tuple[bytes, ...]) -> list[bytes]:
    """End the named contexts; the tags that named none."""
    contexts = _contexts(session)
    known = {c.tag for c in contexts}
    contexts[:] = [c for c in contexts if c.tag not in tags]
    return [t for t in tags if t not in known]


def _uses_seqnumbers(expr: Any) -> bool:
    return uses_key(expr, "SEQSET")


def updates(session: Any) -> list[bytes]:
    """ADDTO / REMOVEFROM lines for every context whose result changed."""
    contexts = getattr(session, "search_contexts", None)
    if not contexts or session.selected is None:
        return []
    contexts = _contexts(session)
    view = session.selected
    folder = view.folder
    out: list[bytes] = []
    for ctx in contexts:
        current = set(view.uids)
        ctx.result &= current  # expunged: told by EXPUNGE / VANISHED
        if ctx.order is not None and len(ctx.order) != len(ctx.result):
            ctx.order = [u for u in ctx.order if u in ctx.result]
        changed = folder.changed_since(ctx.modseq)
        if not changed:
            continue
        shown = [r for r in changed if r.uid in current]
        unseen = [r.modseq for r in changed if r.uid not in current]
        # What the client has not been told of yet (EXISTS) waits for a later pass.
        ctx.modseq = (min(unseen) - 1) if unseen else max(r.modseq for r in changed)
        if not shown:
            continue
        if _uses_seqnumbers(ctx.key):
            records = folder.records(list(view.uids))
            matches = set(searchmod.run_search(ctx.key, folder, records, recent_uids=frozenset(view.recent)))
            considered = {r.uid for r in shown}
            matches &= considered
        else:
            considered = {r.uid for r in shown}
            matches = set(searchmod.run_search(ctx.key, folder, shown, recent_uids=frozenset(view.recent)))
        added = sorted(matches - ctx.result)
        removed = sorted((considered - matches) & ctx.result)
        ctx.result |= set(added)
        ctx.result -= set(removed)
        head = b"* ESEARCH (TAG " + quoted(ctx.tag) + b")" + (b" UID" if ctx.uid else b"")
        to_number = (lambda u: u) if ctx.uid else view.seq_of
        if ctx.order is not None:
            out.extend(_sorted_updates(ctx, folder, head, to_number, set(removed), added))
            continue
        for word, uids in ((b"REMOVEFROM", removed), (b"ADDTO", added)):
            if uids:
                numbers = [n for n in map(to_number, uids) if n]
                # RFC 5267 §4.3: "ADDTO" / "REMOVEFROM" SP "(" context-position SP sequence-set ")"
                out.append(head + b" %s (0 %s)\r\n" % (word, ordered_set(numbers).encode("ascii")))
    return out


def _sorted_updates(ctx: SearchContext, folder: Any, head: bytes, to_number: Any,
                    removed: set[int], added: list[int]) -> list[bytes]:
    """CONTEXT=SORT (RFC 5267 §4.3): REMOVEFROM / ADDTO with the positions
    in the sorted result (the rules are in esort.py)."""
    assert ctx.order is not None
    out = []
    runs = [(b"REMOVEFROM", run) for run in esort.removals(ctx.order, removed)]
    runs += [(b"ADDTO", run) for run in esort.additions(folder, ctx.criteria, ctx.order, added)]
    for word, (position, uids) in runs:
        numbers = [n for n in map(to_number, uids) if n]
        if numbers:
            # "ADDTO" / "REMOVEFROM" SP "(" context-position SP sequence-set ")"
            out.append(head + b" %s (%d %s)\r\n" % (word, position, sort_order_set(numbers).encode()))
    return out
