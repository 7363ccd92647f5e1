"""THREAD=REFERENCES costs linear work (issue 16: one 870 kB References
field took 37 s of CPU; the loop check walked every chain to its root)."""

from __future__ import annotations

from xmail.protocols.imap.thread import (
    MAX_REFERENCES,
    ThreadMessage,
    _References,
    render_thread,
    thread_message,
)
from xmail.store.interfaces import MessageRecord


def _chain(n: int, *, reverse: bool = False) -> list[ThreadMessage]:
    """A reply chain m0 <- m1 <- ... whose References name every ancestor
    (as real mailers do, up to the cap); reverse: children arrive first."""
    out = []
    for seq in range(1, n + 1):
        i = n - seq if reverse else seq - 1
        refs = tuple(f"m{j}@x" for j in range(max(0, i - 150), i))
        out.append(ThreadMessage(seq, seq, float(seq), "s", i > 0, f"m{i}@x", refs))
    return out


def test_huge_references_field_is_capped() -> None:
    refs = " ".join(f"<id{i}.abcdefghij.klmnopqrstuvw@example.com>" for i in range(20000))
    assert len(refs) > 870_000
    record = MessageRecord(1, frozenset(), 1, 10, 5.0, "x")
    m = thread_message(1, 1, record, {"references": refs, "message-id": "<me@x>"})
    # The root of the thread and the nearest ancestors are kept.
    assert len(m.references) == MAX_REFERENCES
    assert m.references[0].startswith("id0.") and m.references[-1].startswith("id19999.")
    work = _References([m])
    roots = work.run()
    assert render_thread(roots, lambda uid: uid) == "(1)"
    assert work.roots.steps < 10 * MAX_REFERENCES


def test_loop_check_is_linear_in_a_long_reply_chain() -> None:
    n = 5000
    work = _References(_chain(n))
    roots = work.run()
    assert len(roots) == 1
    # Walking to the root for every link cost n²/2 = 12.5 million steps.
    assert work.roots.steps < 5 * n
    # Children before their parents: every message is re-parented (step 1.B);
    # still bounded by the References kept per message, not by n².
    work = _References(_chain(n, reverse=True))
    roots = work.run()
    assert len(roots) == 1
    assert work.roots.steps < 2 * MAX_REFERENCES * n


def test_loops_are_still_refused() -> None:
    # a references b, b references a: one of the links must not be made.
    a = ThreadMessage(1, 1, 1.0, "s", False, "a@x", ("b@x",))
    b = ThreadMessage(2, 2, 2.0, "s", False, "b@x", ("a@x",))
    c = ThreadMessage(3, 3, 3.0, "s", False, "c@x", ("a@x", "b@x", "c@x", "a@x"))
    roots = _References([a, b, c]).run()
    rendered = render_thread(roots, lambda uid: uid)
    assert sorted(int(x) for x in rendered.replace("(", " ").replace(")", " ").split()) == [1, 2, 3]
