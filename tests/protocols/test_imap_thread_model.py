# -*- test-case-name: tests.protocols.test_imap_thread_model -*-
"""xmail.protocols.imap.thread: THREAD=ORDEREDSUBJECT and THREAD=REFERENCES (RFC 5256).

The fixture-set tests use tests/data/sort/ in a real MailStore (see
test_imap_sort_model.FixtureFolder; sequence numbers 1-12, UIDs 2-13).  The
expected threads were worked out by hand, step by step, from RFC 5256; the
reasoning is written beside each.  Pure tests build ThreadMessage lists for
single rules of the algorithm.  The last test runs the fixture set through
the real server with imapclient (SORT, THREAD and ESORT on the wire).
"""

from __future__ import annotations

import re
from datetime import UTC
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.protocols.test_imap_sort_model import FixtureFolder
from xmail.protocols.imap.thread import (
    ThreadMessage,
    ThreadNode,
    ThreadSyntaxError,
    message_ids,
    parse_thread_algorithm,
    render_thread,
    thread_messages,
    thread_uids,
)
from xmail.protocols.imap.tokenizer import Atom


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: Any) -> Any:
    f = FixtureFolder(str(tmp_path_factory.mktemp("thread") / "data"))
    yield f
    f.store.close()


def thread_seqs(fixture: Any, algorithm: str, seqs: list[int] | None = None) -> str:
    chosen = [r.uid for r in fixture.records] if seqs is None else [fixture.records[s - 1].uid for s in seqs]
    threads = thread_uids(fixture.folder, fixture.records, algorithm, search_result_uids=chosen)
    return render_thread(threads, fixture.seq_of.__getitem__)


# --- the fixture set ----------------------------------------------------------------------------


def test_orderedsubject_on_the_fixture(fixture: Any) -> None:
    # By (base subject, sent date): "" 9 | Äpfel 6, 10 | Budget 4, 5, 8 |
    # Loop 11, 12 | Meeting 1, 2, 3, 7.  Threads ordered by the sent date of
    # their first message: 9 (1 Mar), 4 (2 Mar 07:30), 1 (09:00), 6 (3 Mar),
    # 11 (5 Mar).  One child is a chain, several are nested lists.
    assert thread_seqs(fixture, "ORDEREDSUBJECT") == "(9)(4 (5)(8))(1 (2)(3)(7))(6 10)(11 12)"


def test_references_on_the_fixture(fixture: Any) -> None:
    # Step 1: 1 -> 2 -> 3 (References); 7 repeats 1's Message-ID, so it gets
    # a unique one and no children; 4 -> 8; 5 and 6 under a dummy for the
    # missing <missing-parent@>; 11 under 12 (12's link to 11 would be a loop).
    # Step 2 roots: 1, 4, dummy, 7, 9, 10, 12.  Step 3 keeps the dummy (two
    # children at the top).  Step 4 by date: 9, 4, dummy (its first child 5,
    # 08:00), 1, 7, 10, 12.
    # Step 5: "budget": 4 first, then the dummy replaces it; 4 joins the
    # dummy.  "meeting agenda": 1, then 7 (neither a reply) -> a new dummy
    # holding 1 and 7.  9 has no subject; 10 and 12 are alone.
    # Step 6: the dummy's children 4 (07:30), 5 (08:00), 6 (3 Mar); top level
    # 9 (1 Mar), dummy (07:30 via 4), dummy (09:00 via 1), 10, 12.
    assert thread_seqs(fixture, "REFERENCES") == "(9)((4 8)(5)(6))((1 2 3)(7))(10)(12 11)"


def test_references_on_a_subset_reassigns_the_duplicate_id(fixture: Any) -> None:
    # Without 1, message 7 is the lowest-numbered holder of <m1@example.org>:
    # it fills the dummy 2 and 3 reference, so 7 -> 2 -> 3.  Top level: 9,
    # dummy (4 at 07:30), 7 (12:00), 10, 12.
    assert thread_seqs(fixture, "REFERENCES", [2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]) == \
        "(9)((4 8)(5)(6))(7 2 3)(10)(12 11)"


def test_uid_thread_renders_uids(fixture: Any) -> None:
    threads = thread_uids(fixture.folder, fixture.records, "REFERENCES",
                          search_result_uids=[r.uid for r in fixture.records])
    assert render_thread(threads, lambda uid: uid) == "(10)((5 9)(6)(7))((2 3 4)(8))(11)(13 12)"


def test_thread_on_nothing(fixture: Any) -> None:
    for algorithm in ("REFERENCES", "ORDEREDSUBJECT"):
        assert thread_seqs(fixture, algorithm, []) == ""


# --- the wire form (RFC 5256 §4 and its examples) ------------------------------------------------


def chain(*uids: int, tail: list[ThreadNode] | None = None) -> ThreadNode:
    node = ThreadNode(uids[-1], tail or [])
    for uid in reversed(uids[:-1]):
        node = ThreadNode(uid, [node])
    return node


def test_render_rfc_example() -> None:
    # RFC 5256 §4: "(2)(3 6 (4 23)(44 7 96))"
    threads = [ThreadNode(2), chain(3, 6, tail=[chain(4, 23), chain(44, 7, 96)])]
    assert render_thread(threads, lambda n: n) == "(2)(3 6 (4 23)(44 7 96))"


def test_render_rfc_orderedsubject_example() -> None:
    # RFC 5256 §4, the ORDEREDSUBJECT response of A283 (in part).
    def top(n: int, *children: int) -> ThreadNode:
        return ThreadNode(n, [ThreadNode(c) for c in children])

    threads = [top(166), top(167), top(174, 175, 176, 178, 181, 180), top(194, 195), top(196, 197, 198)]
    assert render_thread(threads, lambda n: n) == \
        "(166)(167)(174 (175)(176)(178)(181)(180))(194 195)(196 (197)(198))"


def test_render_dummies() -> None:
    # A top-level dummy is a bare nested list: "((3)(5))" (RFC 5256 §4
    # example "((3)(5))" for two messages under a missing parent).
    assert render_thread([ThreadNode(None, [ThreadNode(3), ThreadNode(5)])], lambda n: n) == "((3)(5))"
    # A dummy with one child is transparent.
    assert render_thread([ThreadNode(None, [chain(3, 5)])], lambda n: n) == "(3 5)"
    # to_number maps UIDs to sequence numbers.
    assert render_thread([chain(10, 20)], {10: 1, 20: 2}.__getitem__) == "(1 2)"


def test_render_deep_chain_without_recursion() -> None:
    depth = 20000
    assert render_thread([chain(*range(1, depth + 1))], lambda n: n) == \
        "(" + " ".join(str(n) for n in range(1, depth + 1)) + ")"


# --- REFERENCES rules one by one ---------------------------------------------------------------


def msg(seq: int, mid: str | None = None, refs: str = "", subject: str = "", sent: float | None = None,
        reply: bool = False) -> ThreadMessage:
    return ThreadMessage(seq, seq, float(seq) if sent is None else sent, subject, reply, mid,
                         tuple(message_ids(refs)))


def refs_thread(*messages: ThreadMessage) -> str:
    return render_thread(thread_messages(messages, "REFERENCES"), lambda n: n)


def test_message_ids() -> None:
    assert message_ids("<a@b> <c@d>\t<e@f>") == ["a@b", "c@d", "e@f"]
    assert message_ids("<a@b>(comment <x@y>)<c@d>") == ["a@b", "c@d"]
    assert message_ids("junk, <a@b> more junk") == ["a@b"]
    assert message_ids("") == [] and message_ids(None) == []
    assert message_ids("<>") == []


def test_in_reply_to_only_when_no_references() -> None:
    from xmail.protocols.imap.thread import thread_message
    from xmail.store.interfaces import MessageRecord

    rec = MessageRecord(7, frozenset(), 1, 10, 5.0, "x")
    m = thread_message(7, 1, rec, {"message-id": "<me@x>", "in-reply-to": "<p1@x> <p2@x>"})
    assert m.references == ("p1@x",) and m.message_id == "me@x" and m.sent == 5.0
    m = thread_message(7, 1, rec, {"references": "<r1@x> <r2@x>", "in-reply-to": "<p1@x>",
                                   ":sent-ts": "100", ":base-subject": "Hi", ":subject-reply": "1"})
    assert m.references == ("r1@x", "r2@x") and m.sent == 100 and m.subject == "HI" and m.reply
    m = thread_message(7, 1, rec, {"references": "garbage", "in-reply-to": "<p1@x>"})
    assert m.references == ("p1@x",)


def test_missing_parent_in_the_middle_is_pruned() -> None:
    # 2 references 1 then a missing <x>: 1 -> x -> 2; the dummy x (not at the
    # top level) is replaced by its child.
    assert refs_thread(msg(1, "a"), msg(2, "b", "<a> <x>")) == "(1 2)"


def test_top_level_dummy_with_one_child_is_promoted() -> None:
    assert refs_thread(msg(1, "b", "<x>")) == "(1)"


def test_top_level_dummy_with_children_stays() -> None:
    assert refs_thread(msg(1, "b", "<x>"), msg(2, "c", "<x>")) == "((1)(2))"


def test_self_reference_is_not_a_loop() -> None:
    # 1.A links x -> 1; 1.B breaks it and refuses 1 -> 1; the childless dummy x
    # is then deleted.
    assert refs_thread(msg(1, "a", "<x> <a>")) == "(1)"


def test_loop_between_two_messages() -> None:
    # 1 is linked under the dummy for b; when 2 (= b) says its parent is 1,
    # that would be a loop, so 2 stays at the top with 1 below it.
    assert refs_thread(msg(1, "a", "<b>"), msg(2, "b", "<a>")) == "(2 1)"


def test_truncated_references_are_corrected_by_the_message_itself() -> None:
    # 2's References skip b: 1.A links a -> c.  3 (= b) hangs under a.  4 (= c)
    # says a, b: 1.A keeps b's parent, 1.B breaks a -> c and makes b -> c.
    result = refs_thread(msg(1, "a"), msg(2, "x", "<a> <c>"), msg(3, "b", "<a>"), msg(4, "c", "<a> <b>"))
    assert result == "(1 3 4 2)"


def test_existing_parent_is_kept_in_step_1a() -> None:
    # 3's References claim c's parent is b, but c already has parent a (from
    # 2's References) and 1.A does not change existing links; the childless
    # dummy b is pruned.  4 (= c) confirms a as its parent in 1.B.
    assert refs_thread(msg(1, "a"), msg(2, "x", "<a> <c>"), msg(3, "y", "<b> <c>"),
                       msg(4, "c", "<a>")) == "(1 4 (2)(3))"


def test_message_without_references_loses_the_parent_others_gave_it() -> None:
    # RFC 5256 step 1.B: the link is made to the last reference "or NIL if
    # there are no references" -- 4 (= c) had parent a from 2's References and
    # now has none.
    assert refs_thread(msg(1, "a"), msg(2, "x", "<a> <c>"), msg(3, "y", "<b> <c>"), msg(4, "c")) == \
        "(1)(4 (2)(3))"


def test_duplicate_message_ids() -> None:
    # Only the first message keeps <a>; 3 references <a> and hangs under 1.
    assert refs_thread(msg(1, "a"), msg(2, "a"), msg(3, "c", "<a>")) == "(1 3)(2)"


def test_messages_without_message_id() -> None:
    assert refs_thread(msg(1), msg(2), msg(3, None, "<q>")) == "(1)(2)(3)"


def test_siblings_sorted_by_date_then_sequence() -> None:
    # Children of 1 by sent date (4 and 2 tie at 5.0: 2 first); the top level
    # by date too (6 before 1).
    result = refs_thread(msg(1, "a", sent=3.0), msg(2, "b", "<a>", sent=5.0), msg(3, "c", "<a>", sent=9.0),
                         msg(4, "d", "<a>", sent=5.0), msg(6, "f", sent=1.0))
    assert result == "(6)(1 (2)(4)(3))"


def test_subject_grouping_reply_joins_the_original() -> None:
    # 5.C: a reply at the top becomes a child of the non-reply original.
    result = refs_thread(msg(1, "a", subject="lunch"), msg(2, "b", subject="lunch", reply=True))
    assert result == "(1 2)"


def test_subject_grouping_reply_first_in_date() -> None:
    # 5.B: the table ends up with the non-reply even when the reply is older.
    result = refs_thread(msg(1, "a", subject="lunch", reply=True, sent=1.0),
                         msg(2, "b", subject="lunch", sent=2.0))
    assert result == "(2 1)"


def test_subject_grouping_two_originals_get_a_dummy() -> None:
    result = refs_thread(msg(1, "a", subject="lunch"), msg(2, "b", subject="lunch"),
                         msg(3, "c", subject="lunch"))
    assert result == "((1)(2)(3))"


def test_subject_grouping_merges_dummies() -> None:
    # Two dummies (missing parents x and y) whose first children share a
    # subject: their children become siblings under one dummy.
    result = refs_thread(msg(1, "a", "<x>", subject="s"), msg(2, "b", "<x>", subject="t"),
                         msg(3, "c", "<y>", subject="s"), msg(4, "d", "<y>", subject="u"))
    assert result == "((1)(2)(3)(4))"


def test_subject_grouping_skips_empty_subjects() -> None:
    assert refs_thread(msg(1, "a"), msg(2, "b")) == "(1)(2)"


def test_orderedsubject_rules() -> None:
    messages = [msg(1, subject="b", sent=5.0), msg(2, subject="a", sent=9.0), msg(3, subject="b", sent=1.0),
                msg(4, subject="a", sent=9.0), msg(5, subject="c", sent=0.5)]
    # a: 2, 4 (tie: sequence order); b: 3, 1; c: 5.  Threads by first date:
    # 5 (0.5), 3 (1.0), 2 (9.0).
    assert render_thread(thread_messages(messages, "ORDEREDSUBJECT"), lambda n: n) == "(5)(3 1)(2 4)"


def test_parse_thread_algorithm() -> None:
    assert parse_thread_algorithm(Atom(b"references")) == "REFERENCES"
    assert parse_thread_algorithm("OrderedSubject") == "ORDEREDSUBJECT"
    for bad in (Atom(b"REFS"), [Atom(b"REFERENCES")], 5):
        with pytest.raises(ThreadSyntaxError):
            parse_thread_algorithm(bad)
    with pytest.raises(ThreadSyntaxError):
        thread_messages([], "X")


# --- properties ---------------------------------------------------------------------------------


def walk(threads: list[ThreadNode]) -> list[tuple[ThreadNode, int]]:
    out = []
    stack = [(t, 0) for t in threads]
    while stack:
        node, depth = stack.pop()
        out.append((node, depth))
        stack.extend((c, depth + 1) for c in node.children)
    return out


_IDS = st.sampled_from(["a", "b", "c", "d", "e", "f", None])


@st.composite
def message_sets(draw: Any) -> list[ThreadMessage]:
    n = draw(st.integers(0, 25))
    out = []
    for seq in range(1, n + 1):
        refs = draw(st.lists(st.sampled_from(["a", "b", "c", "d", "e", "f", "g", "h"]), max_size=4))
        sent = float(draw(st.integers(0, 5)))
        subject = draw(st.sampled_from(["", "s", "t"]))
        out.append(ThreadMessage(seq, seq, sent, subject, draw(st.booleans()), draw(_IDS), tuple(refs)))
    return out


@settings(max_examples=300, deadline=None)
@given(message_sets(), st.sampled_from(["REFERENCES", "ORDEREDSUBJECT"]))
def test_threading_properties(messages: list[ThreadMessage], algorithm: str) -> None:
    threads = thread_messages(messages, algorithm)
    nodes = walk(threads)
    uids = [n.uid for n, _ in nodes if n.uid is not None]
    # Every message exactly once.
    assert sorted(uids) == [m.seq for m in messages]
    for node, depth in nodes:
        if node.uid is None:
            # Dummies only at the top, with at least two children.
            assert depth == 0 and len(node.children) >= 2
    if algorithm == "ORDEREDSUBJECT":
        assert all(depth <= 1 for _, depth in nodes)
    # Siblings in (sent date, sequence) order; a dummy counts as its first child.
    by_seq = {m.seq: m for m in messages}

    def key(node: ThreadNode) -> tuple[float, int]:
        while node.uid is None:
            node = node.children[0]
        return by_seq[node.uid].sent, node.uid

    for siblings in [threads] + [n.children for n, _ in nodes]:
        keys = [key(s) for s in siblings]
        assert keys == sorted(keys)
    # The wire form is balanced and names every message once.
    wire = render_thread(threads, lambda n: n)
    depth = 0
    for ch in wire:
        depth += {"(": 1, ")": -1}.get(ch, 0)
        assert depth >= 0
    assert depth == 0
    assert sorted(int(x) for x in re.findall(r"\d+", wire)) == sorted(uids)
    assert "()" not in wire and "( " not in wire and " )" not in wire


# --- over the wire: the real server and imapclient -------------------------------------------------


def test_fixture_set_over_imap_with_imapclient(server) -> None:  # type: ignore[no-untyped-def]
    # The same fixture set APPENDed with its INTERNALDATEs to a real server;
    # imapclient parses the SORT / THREAD / ESEARCH answers.  Expected values
    # are the hand-checked ones above (UIDs are 1-12 here).
    import os
    from datetime import datetime

    from imapclient import IMAPClient

    from tests.conftest import PASSWORD
    from tests.protocols.test_imap_sort_model import ARRIVALS, DATA, HAND_CHECKED, fixture_files

    client = IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=20)
    try:
        client.login("alice@example.com", PASSWORD)
        caps = set(client.capabilities())
        assert {b"SORT", b"SORT=DISPLAY", b"ESORT", b"THREAD=ORDEREDSUBJECT", b"THREAD=REFERENCES"} <= caps
        for seq, name in enumerate(fixture_files(), 1):
            with open(os.path.join(DATA, name), "rb") as f:
                client.append("INBOX", f.read(), (), msg_time=datetime.fromtimestamp(ARRIVALS[seq], UTC))
        client.select_folder("INBOX")
        for criteria in ("DATE", "REVERSE CC", "SUBJECT", "DISPLAYFROM", "REVERSE ARRIVAL"):
            assert client.sort(criteria.split()) == HAND_CHECKED[criteria], criteria
        assert client.sort(["FROM"], ["NOT", "SUBJECT", "budget"]) == [9, 2, 10, 3, 6, 7, 12, 11, 1]
        assert client.thread("REFERENCES") == (
            (9,), ((4, 8), (5,), (6,)), ((1, 2, 3), (7,)), (10,), (12, 11))
        assert client.thread("ORDEREDSUBJECT") == (
            (9,), (4, (5,), (8,)), (1, (2,), (3,), (7,)), (6, 10), (11, 12))
        tag = client._imap._new_tag()  # ESORT: imapclient has no API for SORT RETURN
        client._imap.send(tag + b" SORT RETURN (MIN MAX COUNT) (REVERSE DATE) UTF-8 ALL\r\n")
        lines = []
        while True:
            line = client._imap._get_line()
            lines.append(line)
            if line.startswith(tag):
                break
        assert lines[0] == b'* ESEARCH (TAG "' + tag + b'") MIN 12 MAX 9 COUNT 12'
        assert lines[-1].startswith(tag + b" OK")
    finally:
        try:
            client.logout()
        except Exception:
            pass
