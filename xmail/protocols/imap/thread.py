# -*- test-case-name: tests.protocols.test_imap_thread_model -*-
"""THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256 §3 "THREAD").

    thread_uids(folder, records, algorithm, *, search_result_uids) -> list[ThreadNode]
    thread_messages(messages, algorithm) -> list[ThreadNode]    (pure core)
    render_thread(threads, to_number) -> str                     ("(2)(3 6 (4 23)(44 7 96))")

Pure and synchronous, no reactor: the server runs thread_uids in a thread.
Inputs are as for sort.sort_uids: `records` in sequence order, and the UIDs
search.run_search matched.  Everything comes from the cached index headers
(":sent-ts", ":base-subject", ":subject-reply", "message-id", "references",
"in-reply-to"), never from the message files.

The result is a list of top-level `ThreadNode`s in thread order.  A node's
`uid` is None for a dummy (a message that is referenced but not in the
result set); dummies are only left at the top level, holding two or more
children (RFC 5256 REFERENCES step 3), and render as a bare nested list:
``((3)(5))``.

Every tree walk is iterative: reply chains thousands deep must not hit
Python's recursion limit.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from xmail.protocols.imap.model import SearchAnd
from xmail.protocols.imap.sort import cached_headers, collation_key, sent_date, subject_key
from xmail.store.interfaces import MessageRecord

__all__ = ["ALGORITHMS", "ThreadArgs", "ThreadMessage", "ThreadNode", "ThreadSyntaxError", "message_ids",
           "parse_thread_algorithm", "render_thread", "thread_messages", "thread_uids"]

ALGORITHMS = ("ORDEREDSUBJECT", "REFERENCES")  # advertised as THREAD=<name>


class ThreadSyntaxError(ValueError):
    """An unknown threading algorithm (the grammar answers BAD)."""


@dataclass(frozen=True, slots=True)
class ThreadArgs:
    """A parsed `[UID] THREAD algorithm charset keys` (RFC 5256 §5) for
    grammar.py to produce."""

    algorithm: str  # one of ALGORITHMS
    key: SearchAnd
    charset: str = "UTF-8"


def parse_thread_algorithm(item: Any) -> str:
    """RFC 5256 §5 thread-alg = "ORDEREDSUBJECT" / "REFERENCES" / thread-alg-ext."""
    if isinstance(item, (bytes, bytearray)):
        item = bytes(item).decode("ascii", "replace")
    if not isinstance(item, str):
        raise ThreadSyntaxError("threading algorithm must be an atom")
    name = item.upper()
    if name not in ALGORITHMS:
        raise ThreadSyntaxError(f"unsupported threading algorithm {name[:30]}")
    return name


@dataclass(slots=True)
class ThreadMessage:
    """What threading needs of one message."""

    uid: int
    seq: int  # message sequence number: the tie-breaker (RFC 5256 §2.2)
    sent: float  # sent date, RFC 5256 §2.2
    subject: str  # collated base subject (RFC 5256 §2.1); "" when empty
    reply: bool = False  # the base subject extraction removed Re:/Fwd:/(fwd)/[fwd: ]
    message_id: str | None = None  # the msg-id, without angle brackets
    references: tuple[str, ...] = ()  # References, else the first In-Reply-To id


class ThreadNode:
    """One message of a thread (uid None: a dummy), with its children in
    thread order.  REFERENCES builds its work tree from these directly
    (JWZ's "containers"), hence `message` and `parent`."""

    __slots__ = ("uid", "children", "message", "parent")

    def __init__(self, uid: int | None = None, children: list[ThreadNode] | None = None,
                 message: ThreadMessage | None = None):
        self.uid = uid
        self.children: list[ThreadNode] = children if children is not None else []
        self.message = message
        self.parent: ThreadNode | None = None

    def __repr__(self) -> str:
        return f"ThreadNode({self.uid!r}, {self.children!r})"


# --- message ids ---------------------------------------------------------------------

# RFC 5322 §3.6.4 msg-id = [CFWS] "<" id-left "@" id-right ">" [CFWS]; read
# leniently: anything between angle brackets without whitespace (ids without
# "@" from old mailers included), comments first removed.
_MSG_ID = re.compile(r"<([^<>\s]+)>")
_COMMENT = re.compile(r"\([^()]*\)")


def message_ids(value: str | None) -> list[str]:
    """The msg-ids of a Message-ID / References / In-Reply-To value, in order."""
    if not value:
        return []
    if "(" in value:
        value = _COMMENT.sub(" ", value)
    return _MSG_ID.findall(value)


# References ids kept per message: the first (the thread's root) and the
# last MAX_REFERENCES - 1 (the nearest ancestors, which decide the parent),
# as the store keeps them since issue 16.  RFC 5256 step 1.A links the ids
# as a chain; an 870 kB field of 20,000 ids cost 37 s of CPU uncapped, and
# data indexed before the store's cap may still hold such fields.
MAX_REFERENCES = 100


def cap_references(ids: list[str]) -> list[str]:
    if len(ids) <= MAX_REFERENCES:
        return ids
    return [ids[0]] + ids[-(MAX_REFERENCES - 1):]


def thread_message(uid: int, seq: int, record: MessageRecord, headers: dict[str, str]) -> ThreadMessage:
    """The ThreadMessage of one message's cached headers."""
    ids = message_ids(headers.get("message-id"))
    # RFC 5256 REFERENCES step 1: the References ids, or when there are none,
    # the first valid id of In-Reply-To.
    refs = cap_references(message_ids(headers.get("references")))
    if not refs:
        refs = message_ids(headers.get("in-reply-to"))[:1]
    return ThreadMessage(uid, seq, sent_date(headers, record.internaldate),
                         collation_key(subject_key(headers)), ":subject-reply" in headers,
                         ids[0] if ids else None, tuple(refs))


def thread_uids(folder: Any, records: Sequence[MessageRecord], algorithm: str, *,
                search_result_uids: Iterable[int]) -> list[ThreadNode]:
    """Thread the UIDs of search_result_uids that are in records."""
    if algorithm not in ALGORITHMS:
        raise ThreadSyntaxError(f"unsupported threading algorithm {algorithm[:30]}")
    wanted = set(search_result_uids)
    chosen = [(seq, r) for seq, r in enumerate(records, 1) if r.uid in wanted]
    headers = cached_headers(folder, [r.uid for _, r in chosen])
    if algorithm == "ORDEREDSUBJECT":
        return _ordered_subject_keys([
            (collation_key(subject_key(h)), sent_date(h, r.internaldate), seq, r.uid)
            for (seq, r), h in zip(chosen, headers, strict=True)])
    messages = [thread_message(r.uid, seq, r, h) for (seq, r), h in zip(chosen, headers, strict=True)]
    return thread_messages(messages, algorithm)


def thread_messages(messages: Sequence[ThreadMessage], algorithm: str) -> list[ThreadNode]:
    if algorithm == "ORDEREDSUBJECT":
        return _ordered_subject(messages)
    if algorithm == "REFERENCES":
        return _References(messages).run()
    raise ThreadSyntaxError(f"unsupported threading algorithm {algorithm[:30]}")


# --- ORDEREDSUBJECT ----------------------------------------------------------------------------


def _ordered_subject(messages: Sequence[ThreadMessage]) -> list[ThreadNode]:
    return _ordered_subject_keys([(m.subject, m.sent, m.seq, m.uid) for m in messages])


def _ordered_subject_keys(keys: list[tuple[str, float, int, int]]) -> list[ThreadNode]:
    """keys: (collated base subject, sent date, sequence number, uid)."""
    # RFC 5256 §3 ORDEREDSUBJECT: sort by base subject then sent date, split
    # into threads of equal base subject, the first message at the top and the
    # rest its children (no grandchildren); threads sorted by the sent date of
    # their first message.  Sequence numbers break every tie (§2.2).
    keys.sort()
    threads: list[tuple[tuple[float, int], ThreadNode]] = []
    current_subject: str | None = None
    top: ThreadNode | None = None
    for subject, sent, seq, uid in keys:
        if top is None or subject != current_subject:
            top = ThreadNode(uid)
            current_subject = subject
            threads.append(((sent, seq), top))
        else:
            top.children.append(ThreadNode(uid))
    threads.sort(key=lambda t: t[0])
    return [node for _key, node in threads]


# --- REFERENCES ------------------------------------------------------------------------------


class _Roots:
    """The root of a node's tree, for the loop check of RFC 5256 step 1:
    linking a root `child` below `parent` makes a loop exactly when
    `parent` is in child's tree, i.e. when root(parent) is child.

    Walking up the parents for every link made a reply chain of n messages
    cost n²/2 steps.  Here each node remembers the root found for it (path
    compression): links only put a whole tree below another node, so a
    remembered root stays an ancestor and the walk resumes from it.  Only
    cutting a node with children from its parent (step 1.B) can make a
    remembered root wrong for the nodes below it; then the memory is
    dropped and rebuilt as walks go."""

    def __init__(self) -> None:
        self._hint: dict[int, ThreadNode] = {}
        self.steps = 0  # parent/hint hops, for the tests' cost bound

    def root(self, node: ThreadNode) -> ThreadNode:
        path = []
        hint = self._hint
        while True:
            self.steps += 1
            up = hint.get(id(node))
            if up is None or up is node:
                up = node.parent
                if up is None:
                    break
            path.append(node)
            node = up
        for n in path:
            hint[id(n)] = node
        return node

    def link(self, parent: ThreadNode, child: ThreadNode) -> bool:
        """child (a root) below parent, unless that makes a loop."""
        if self.root(parent) is child:
            return False  # "Do not create a parent/child link if [...] a loop"
        child.parent = parent
        parent.children.append(child)
        return True

    def unlink(self, child: ThreadNode) -> None:
        parent = child.parent
        if parent is None:
            return
        parent.children.remove(child)
        child.parent = None
        if child.children:
            self._hint.clear()  # the nodes below child may remember a root above it
        else:
            self._hint.pop(id(child), None)


class _References:
    def __init__(self, messages: Sequence[ThreadMessage]):
        self.messages = sorted(messages, key=lambda m: m.seq)
        self.roots = _Roots()
        self.by_id: dict[str, ThreadNode] = {}
        self.containers: list[ThreadNode] = []

    def container(self, message_id: str) -> ThreadNode:
        c = self.by_id.get(message_id)
        if c is None:
            # "If no message can be found with a given Message ID, create a
            # dummy message with this ID."
            c = self.by_id[message_id] = ThreadNode()
            self.containers.append(c)
        return c

    def fill(self, c: ThreadNode, m: ThreadMessage) -> None:
        c.message = m
        c.uid = m.uid

    def run(self) -> list[ThreadNode]:
        self.link()  # step 1
        roots = [c for c in self.containers if c.parent is None]  # step 2
        roots = self.prune(roots)  # step 3
        self.sort_top(roots)  # step 4
        roots = self.group_by_subject(roots)  # step 5
        self.sort_all(roots)  # step 6
        return roots

    # step 1
    def link(self) -> None:
        for m in self.messages:
            own = self.by_id.get(m.message_id) if m.message_id is not None else None
            if m.message_id is None or (own is not None and own.message is not None):
                # No Message-ID, or a duplicate of an earlier (lower sequence
                # number) message's: a unique id of its own, which nothing
                # can reference.
                this = ThreadNode(m.uid, None, m)
                self.containers.append(this)
            elif own is not None:
                self.fill(own, m)  # a dummy made by an earlier reference
                this = own
            else:
                this = self.container(m.message_id)
                self.fill(this, m)
            # 1.A: link the references as a chain, never changing an
            # existing parent and never making a loop.
            by_id = self.by_id
            refs = [by_id.get(r) or self.container(r) for r in m.references[-MAX_REFERENCES:]]
            for parent, child in zip(refs, refs[1:], strict=False):
                if child.parent is None and parent is not child:
                    self.roots.link(parent, child)
            # 1.B: the last reference is this message's parent, replacing a
            # parent set by another message's (probably truncated) References.
            self.roots.unlink(this)
            if refs:
                self.roots.link(refs[-1], this)

    # step 3
    @staticmethod
    def prune(roots: list[ThreadNode]) -> list[ThreadNode]:
        # Bottom-up: by the time a container is looked at, its children have
        # been pruned, so promoted children never need a second look.
        order: list[ThreadNode] = []
        stack = list(roots)
        while stack:
            c = stack.pop()
            order.append(c)
            stack.extend(c.children)
        for c in reversed(order):
            if c.children:
                c.children = _pruned(c.children, at_root=False, parent=c)
        return _pruned(roots, at_root=True, parent=None)

    # step 4
    @staticmethod
    def sort_top(roots: list[ThreadNode]) -> None:
        for c in roots:
            if c.message is None:
                c.children.sort(key=_date_key)
        roots.sort(key=_date_key)

    # step 5
    @staticmethod
    def group_by_subject(roots: list[ThreadNode]) -> list[ThreadNode]:
        table: dict[str, ThreadNode] = {}
        for c in roots:  # 5.B
            subject = _subject_of(c)
            if not subject:
                continue
            old = table.get(subject)
            if old is None:
                table[subject] = c
            elif old.message is not None and (
                    c.message is None or (_is_reply(old) and not _is_reply(c))):
                table[subject] = c
        absorbed: set[int] = set()
        added: list[ThreadNode] = []
        for c in roots:  # 5.C
            if id(c) in absorbed:
                continue
            subject = _subject_of(c)
            if not subject:
                continue
            old = table[subject]
            if old is c:
                continue
            absorbed.add(id(c))
            if old.message is None and c.message is None:
                for child in c.children:
                    child.parent = old
                old.children.extend(c.children)
                c.children = []
            elif old.message is None:
                old.children.append(c)
                c.parent = old
            elif _is_reply(c) and not _is_reply(old):
                old.children.append(c)
                c.parent = old
            else:
                dummy = ThreadNode()
                dummy.children = [old, c]
                old.parent = c.parent = dummy
                absorbed.add(id(old))
                table[subject] = dummy
                added.append(dummy)
        return [c for c in roots if id(c) not in absorbed] + added

    # step 6
    @staticmethod
    def sort_all(roots: list[ThreadNode]) -> None:
        # Youngest siblings first, so that a dummy's first child is final
        # before the dummy is sorted among its own siblings.
        order: list[ThreadNode] = []
        stack = list(roots)
        while stack:
            c = stack.pop()
            order.append(c)
            stack.extend(c.children)
        for c in reversed(order):
            if len(c.children) > 1:
                c.children.sort(key=_date_key)
        roots.sort(key=_date_key)


def _pruned(children: list[ThreadNode], *, at_root: bool, parent: ThreadNode | None) -> list[ThreadNode]:
    # RFC 5256 REFERENCES step 3: a dummy without children goes; a dummy with
    # children is replaced by them, except at the top level where that only
    # happens for a single child.
    out: list[ThreadNode] = []
    for c in children:
        if c.message is not None:
            out.append(c)
        elif not c.children:
            c.parent = None
        elif not at_root or len(c.children) == 1:
            for child in c.children:
                child.parent = parent
            out.extend(c.children)
            c.children = []
        else:
            out.append(c)
    return out


def _first_message(c: ThreadNode) -> ThreadMessage | None:
    # "In the case of a dummy message, use its first child" (steps 4-6).
    while c.message is None:
        if not c.children:
            return None
        c = c.children[0]
    return c.message


def _date_key(c: ThreadNode) -> tuple[float, int]:
    m = _first_message(c)
    return (m.sent, m.seq) if m is not None else (float("-inf"), 0)


def _subject_of(c: ThreadNode) -> str:
    m = _first_message(c)
    return m.subject if m is not None else ""


def _is_reply(c: ThreadNode) -> bool:
    return c.message is not None and c.message.reply


# --- the wire form ---------------------------------------------------------------------------


def render_thread(threads: Sequence[ThreadNode], to_number: Callable[[int], int]) -> str:
    """RFC 5256 §4 thread-data without the leading "THREAD ":

        thread-list    = "(" (thread-members / thread-nested) ")"
        thread-members = nz-number *(SP nz-number) [SP thread-nested]
        thread-nested  = 2*thread-list

    A chain of single children is a run of numbers; two or more children are
    nested lists; a top-level dummy is a bare nested list.  to_number maps a
    UID to what the client asked for (sequence number for THREAD, the UID
    itself for UID THREAD).  "" for no threads ("* THREAD" alone).
    """
    out: list[str] = []
    stack: list[ThreadNode | str] = []
    for top in reversed(threads):
        stack += [")", top, "("]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            out.append(item)
            continue
        kids = item.children
        if item.uid is not None:
            out.append(str(to_number(item.uid)))
            if kids:
                out.append(" ")
        if len(kids) == 1:
            stack.append(kids[0])
        else:
            for child in reversed(kids):
                stack += [")", child, "("]
    return "".join(out)
