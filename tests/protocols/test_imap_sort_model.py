# -*- test-case-name: tests.protocols.test_imap_sort_model -*-
"""xmail.protocols.imap.sort: SORT (RFC 5256), SORT=DISPLAY (RFC 5957), ESORT (RFC 5267).

The fixture set is tests/data/sort/ (see its README.md for what each message
tests), held in a real MailStore in synchronous mode.  A throwaway message
is appended and expunged first, so UIDs (2..13) differ from sequence numbers
(1..12) and the tests can tell them apart.  Every expected order below was
worked out by hand from the RFC and the fixture README, never copied from
output.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.store.conftest import SyncStore, result_of
from tests.support.folders import RecordingFolder, folder_of
from xmail.message import base_subject, parse_message
from xmail.protocols.imap.sort import (
    SortCriteria,
    SortCriterion,
    SortSyntaxError,
    collation_key,
    esort_response,
    esort_result,
    parse_esort_returns,
    parse_sort_criteria,
    sort_order_set,
    sort_uids,
)
from xmail.protocols.imap.tokenizer import Atom, QuotedString
from xmail.store.interfaces import MessageRecord

DATA = os.path.join(os.path.dirname(__file__), os.pardir, "data", "sort")


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


# INTERNALDATE of each fixture message (sequence number -> UTC time).
ARRIVALS = {
    1: ts(2026, 3, 2, 9, 5), 2: ts(2026, 3, 2, 10, 35), 3: ts(2026, 3, 2, 11, 5),
    4: ts(2026, 3, 2, 7, 35), 5: ts(2026, 3, 2, 8, 0), 6: ts(2026, 3, 3, 0, 5),
    7: ts(2026, 3, 2, 12, 5), 8: ts(2026, 3, 2, 9, 0), 9: ts(2026, 3, 1, 0, 0),
    10: ts(2026, 3, 4, 10, 5), 11: ts(2026, 3, 5, 10, 5), 12: ts(2026, 3, 2, 10, 35),
}


def fixture_files() -> list[str]:
    return sorted(f for f in os.listdir(DATA) if f.endswith(".eml"))


class FixtureFolder:
    """The fixture set in INBOX of a synchronous MailStore."""

    def __init__(self, data_dir: str):
        self.store = SyncStore(data_dir)
        self.folder = self.store.mailbox().folder("INBOX")
        first = result_of(self.folder.append(b"Subject: throwaway\r\n\r\nx\r\n", (), ts(2026, 1, 1)))
        result_of(self.folder.expunge([first.uid]))
        for seq, name in enumerate(fixture_files(), 1):
            with open(os.path.join(DATA, name), "rb") as f:
                result_of(self.folder.append(f.read(), (), ARRIVALS[seq]))
        self.records = self.folder.records()
        self.seq_of = {r.uid: seq for seq, r in enumerate(self.records, 1)}

    def sort(self, criteria: str, seqs: list[int] | None = None) -> list[int]:
        """SORT (criteria) on the messages with these sequence numbers (all by
        default); the result as sequence numbers."""
        parsed = parse_sort_criteria([Atom(a.encode()) for a in criteria.split()])
        chosen = [r.uid for r in self.records] if seqs is None else [self.records[s - 1].uid for s in seqs]
        uids = sort_uids(self.folder, self.records, parsed, search_result_uids=chosen)
        return [self.seq_of[uid] for uid in uids]


@pytest.fixture(scope="module")
def fixture(tmp_path_factory: Any) -> Any:
    f = FixtureFolder(str(tmp_path_factory.mktemp("sort") / "data"))
    yield f
    f.store.close()


def test_fixture_layout(fixture: Any) -> None:
    assert len(fixture.records) == 12
    assert [r.uid for r in fixture.records] == list(range(2, 14))


# --- hand-checked orders on the fixture set -------------------------------------------------------

HAND_CHECKED = {
    # INTERNALDATE; 2 and 12 arrived at the same second: sequence order.
    "ARRIVAL": [9, 4, 5, 8, 1, 2, 12, 3, 7, 6, 10, 11],
    "REVERSE ARRIVAL": [11, 10, 6, 7, 3, 2, 12, 1, 8, 5, 4, 9],
    # Sent dates in UTC: 1 (10:00 +0100) is before 2 (08:30 -0200); 4 is
    # 1 Mar 23:30 -0800 = 2 Mar 07:30Z; 5 and 9 have no Date and 8 a broken
    # one, so they use INTERNALDATE; 8 then ties with 1 at 09:00Z.
    "DATE": [9, 4, 5, 1, 8, 2, 3, 7, 6, 10, 11, 12],
    "REVERSE DATE": [12, 11, 10, 6, 7, 3, 2, 1, 8, 5, 4, 9],
    # Base subjects: "" (9) < "Äpfel und Birnen" (6, 10; NFKD puts Ä with A)
    # < "Budget" (4, 5, 8) < "Loop" (11, 12) < "Meeting agenda" (1, 2, 3, 7).
    "SUBJECT": [9, 6, 10, 4, 5, 8, 11, 12, 1, 2, 3, 7],
    "REVERSE SUBJECT": [1, 2, 3, 7, 11, 12, 4, 5, 8, 6, 10, 9],
    "SUBJECT REVERSE DATE": [9, 10, 6, 8, 5, 4, 12, 11, 7, 3, 2, 1],
    "REVERSE SUBJECT ARRIVAL": [1, 2, 3, 7, 12, 11, 4, 5, 8, 6, 10, 9],
    # addr-mailbox of the first From: "" (9 none), alice (upper case in the
    # field), bob (2, 10), carol, dave, emile, eve, frank, grace,
    # "undisclosed-recipients" (11: the empty group's marker, RFC 5256 §3 /
    # RFC 3501 §7.4.2, names it), zoe.
    "FROM": [9, 4, 2, 10, 3, 5, 6, 7, 8, 12, 11, 1],
    "REVERSE FROM": [1, 11, 12, 8, 7, 6, 5, 3, 2, 10, 4, 9],
    "FROM REVERSE DATE": [9, 4, 10, 2, 3, 5, 6, 7, 8, 12, 11, 1],
    # TO: "" (5, 9), alice (6, 12), bob (1, 7 "BOB"), carol, dave, finance,
    # team (3, 11), zoe.
    "TO": [5, 9, 6, 12, 1, 7, 8, 10, 4, 3, 11, 2],
    # CC: only 3 (dave), 6 (alvaro), 8 (zed) have one; the nine others tie
    # on "" and stay in sequence order, also under REVERSE.
    "CC": [1, 2, 4, 5, 7, 9, 10, 11, 12, 6, 3, 8],
    "REVERSE CC": [8, 3, 6, 1, 2, 4, 5, 7, 9, 10, 11, 12],
    # Bodies were padded to 1-12 thousand octets in this rank order.
    "SIZE": [4, 6, 2, 8, 1, 11, 9, 5, 12, 7, 10, 3],
    "REVERSE SIZE": [3, 10, 7, 12, 5, 9, 11, 1, 8, 2, 6, 4],
    # RFC 5957: display names, else mailbox@host; a group's name (11).
    # "bob two" < "bob@..." (SP < "@"); "émile" is E + U+0301 after NFKD, so
    # it follows "eve@..."; "Zoë Adams" is last.
    "DISPLAYFROM": [9, 4, 10, 2, 3, 5, 7, 6, 8, 12, 11, 1],
    # "" (5, 9), "alfred" (7, display name of BOB@), alice@ (6, 12), "bob"
    # (1), carol@, dave@, "finance", team@ (3, 11), "zoë".
    "DISPLAYTO": [5, 9, 7, 6, 12, 1, 8, 10, 4, 3, 11, 2],
}


@pytest.mark.parametrize("criteria", sorted(HAND_CHECKED))
def test_hand_checked_order(fixture: Any, criteria: str) -> None:
    assert fixture.sort(criteria) == HAND_CHECKED[criteria]


def test_sort_on_a_search_result_subset(fixture: Any) -> None:
    # Only the messages the search matched, still in sort order.
    assert fixture.sort("DATE", [12, 1, 8, 9, 4]) == [9, 4, 1, 8, 12]
    assert fixture.sort("REVERSE CC", [1, 3, 6, 2]) == [3, 6, 1, 2]
    assert fixture.sort("SUBJECT", []) == []


def test_uid_sort_returns_uids(fixture: Any) -> None:
    criteria = parse_sort_criteria([Atom(b"DATE")])
    uids = sort_uids(fixture.folder, fixture.records, criteria,
                     search_result_uids=[r.uid for r in fixture.records])
    # UID = sequence number + 1 in this folder.
    assert uids == [n + 1 for n in HAND_CHECKED["DATE"]]


def test_uids_not_in_records_are_ignored(fixture: Any) -> None:
    criteria = SortCriteria.of("ARRIVAL")
    assert sort_uids(fixture.folder, fixture.records, criteria, search_result_uids=[1, 99, 10]) == [10]


def test_message_gone_from_the_index_sorts_with_empty_keys(fixture: Any) -> None:
    # A record another session expunged (the session still shows it): no
    # cached headers, so "" / INTERNALDATE keys, no error.
    ghost = MessageRecord(500, frozenset(), 0, 0, ts(2026, 3, 2, 9, 30), "ghost")
    records = fixture.records + [ghost]
    uids = sort_uids(fixture.folder, records, SortCriteria.of("DATE"),
                     search_result_uids=[r.uid for r in records])
    seqs = [fixture.seq_of.get(u, 13) for u in uids]
    assert seqs == [9, 4, 5, 1, 8, 13, 2, 3, 7, 6, 10, 11, 12]
    uids = sort_uids(fixture.folder, records, SortCriteria.of("FROM"),
                     search_result_uids=[r.uid for r in records])
    assert [fixture.seq_of.get(u, 13) for u in uids][:3] == [9, 13, 4]


# --- the cached base subject against RFC 5256 §2.1 ------------------------------------------------


def rfc_base_subject(subject: str) -> tuple[str, bool]:
    """A literal, character-by-character reading of RFC 5256 §2.1 (written
    for this test, independent of xmail.message)."""
    s = re.sub(r"[ \t\r\n]+", " ", subject)  # (1)
    reply = False

    def blob_end(i: int) -> int:  # subj-blob = "[" *BLOBCHAR "]" *WSP
        if i >= len(s) or s[i] != "[":
            return -1
        j = i + 1
        while j < len(s) and s[j] not in "[]":
            j += 1
        if j >= len(s) or s[j] != "]":
            return -1
        j += 1
        while j < len(s) and s[j] == " ":
            j += 1
        return j

    def refwd_end(i: int) -> int:  # subj-refwd = ("re" / ("fw" ["d"])) *WSP [subj-blob] ":"
        low = s.lower()
        for word in ("re", "fwd", "fw"):
            if not low.startswith(word, i):
                continue
            j = i + len(word)
            while j < len(s) and s[j] == " ":
                j += 1
            if j < len(s) and s[j] == ":":
                return j + 1
            b = blob_end(j)
            if b >= 0 and b < len(s) and s[b] == ":":
                return b + 1
        return -1

    def leader_end() -> int:  # subj-leader = (*subj-blob subj-refwd) / WSP
        if s[:1] == " ":
            return 1
        i = 0
        while True:
            r = refwd_end(i)
            if r >= 0:
                return r
            i = blob_end(i)
            if i < 0:
                return -1

    while True:
        while True:  # (2) subj-trailer = "(fwd)" / WSP
            if s.endswith(" "):
                s = s[:-1]
            elif s.lower().endswith("(fwd)"):
                s = s[:-5]
                reply = True
            else:
                break
        while True:  # (5) = repeat (3) and (4)
            changed = False
            end = leader_end()  # (3)
            if end > 0:
                reply = reply or s[:end] != " "
                s = s[end:]
                changed = True
            end = blob_end(0)  # (4), only if a non-empty subj-base is left
            if end > 0 and s[end:].strip(" "):
                s = s[end:]
                changed = True
            if not changed:
                break
        if s.lower().startswith("[fwd:") and s.endswith("]"):  # (6)
            s = s[5:-1]
            reply = True
            continue
        return s, reply


BASE_SUBJECTS = [
    # (decoded subject, base subject, reply/forward) — worked out by hand.
    ("Meeting agenda", "Meeting agenda", False),
    ("Re: Meeting agenda", "Meeting agenda", True),
    ("Re: [team] Fwd: Re: Meeting agenda", "Meeting agenda", True),
    ("RE:   [PATCH v2]  [fwd: Äpfel und Birnen]  (fwd)", "Äpfel und Birnen", True),
    ("Budget (fwd)", "Budget", True),
    ("Budget (fwd) (FWD)  ", "Budget", True),
    ("Budget(fwd)", "Budget", True),
    ("[fwd: Budget]", "Budget", True),
    ("Fwd: [fwd: Re: x]", "x", True),
    ("[fwd: x] (fwd)", "x", True),
    ("Re[2]: x", "x", True),
    ("Re [list]: x", "x", True),
    ("Fwd : x", "x", True),
    ("fw: x", "x", True),
    ("FW:x", "x", True),
    ("re: RE: Fw: fwd: x", "x", True),
    ("Re:Re:Re: x", "x", True),
    ("[a][b] Re: x", "x", True),
    ("[a] x", "x", False),
    ("[a] [b] x", "x", False),
    ("[tag]", "[tag]", False),  # removing the blob would leave nothing
    ("Re: [tag]", "[tag]", True),
    ("Re x", "Re x", False),  # no colon: not a subj-refwd
    ("Refinance: x", "Refinance: x", False),
    ("Reply: x", "Reply: x", False),
    ("Re:\tx", "x", True),
    ("x  \t y", "x y", False),
    ("Re: Re: ", "", True),
    ("   ", "", False),
    ("", "", False),
    ("[fwd: ]", "", True),
    ("x [fwd: y]", "x [fwd: y]", False),
    ("Re: (fwd) x", "(fwd) x", True),
]


@pytest.mark.parametrize("subject,base,reply", BASE_SUBJECTS)
def test_base_subject_hand_checked(subject: str, base: str, reply: bool) -> None:
    assert rfc_base_subject(subject) == (base, reply)  # the reference reading agrees ...
    assert base_subject(subject) == (base, reply)  # ... and so does the store's


@pytest.mark.parametrize("raw,base", [
    ("=?utf-8?q?Re=3A_Meeting_agenda?=", "Meeting agenda"),
    ("=?UTF-8?B?UmU6IFtsaXN0XSDDhHBmZWw=?=", "Äpfel"),  # "Re: [list] Äpfel"
    ("Re: =?iso-8859-1?q?=C4pfel?= =?iso-8859-1?q?_und_Birnen?=", "Äpfel und Birnen"),
    ("=?utf-8?q?Fwd=3A?= [fwd: =?utf-8?q?caf=C3=A9?=]", "café"),
    ("Re: =?utf-8?b?5Lya6K6u?= (fwd)", "会议"),
])
def test_cached_base_subject_decodes_encoded_words(raw: str, base: str) -> None:
    # RFC 5256 §2.1 (1): encoded words are decoded before anything else.
    headers = parse_message(f"Subject: {raw}\r\n\r\n".encode()).headers
    assert headers[":base-subject"] == base
    assert headers[":subject-reply"] == "1"


def test_cached_base_subject_of_the_fixture_files() -> None:
    expected = ["Meeting agenda", "Meeting agenda", "Meeting agenda", "Budget", "Budget",
                "Äpfel und Birnen", "Meeting agenda", "Budget", None, "Äpfel und Birnen",
                "Loop", "Loop"]
    for name, base in zip(fixture_files(), expected, strict=True):
        with open(os.path.join(DATA, name), "rb") as f:
            headers = parse_message(f.read()).headers
        assert headers.get(":base-subject") == base, name
        if "subject" in headers:
            assert rfc_base_subject(headers["subject"])[0] == base, name


_PIECES = st.sampled_from(["Re", "re", "RE", "Fwd", "fwd", "Fw", "FW", ":", " ", "  ", "\t", "[",
                           "]", "[x]", "[fwd:", "(fwd)", "(FWD)", "x", "ab", "(", ")", "Äpfel"])


@settings(max_examples=400, deadline=None)
@given(st.lists(_PIECES, max_size=12).map("".join))
def test_base_subject_matches_the_rfc_reading(subject: str) -> None:
    assert base_subject(subject) == rfc_base_subject(subject)


# --- pure unit tests ---------------------------------------------------------------------------


def test_parse_sort_criteria() -> None:
    parsed = parse_sort_criteria([Atom(b"reverse"), Atom(b"Date"), Atom(b"SUBJECT"),
                                  Atom(b"DISPLAYFROM")])
    assert parsed == SortCriteria((SortCriterion("DATE", True), SortCriterion("SUBJECT"),
                                   SortCriterion("DISPLAYFROM")))
    assert [(c.key, c.reverse) for c in parsed] == [("DATE", True), ("SUBJECT", False),
                                                     ("DISPLAYFROM", False)]
    assert parse_sort_criteria(["ARRIVAL"]) == SortCriteria.of("ARRIVAL")
    assert parsed.needs_headers
    assert not SortCriteria.of("ARRIVAL", ("SIZE", True)).needs_headers


@pytest.mark.parametrize("items", [
    [], [Atom(b"REVERSE")], [Atom(b"REVERSE"), Atom(b"REVERSE"), Atom(b"DATE")],
    [Atom(b"DATE"), Atom(b"REVERSE")], [Atom(b"BCC")], [QuotedString(b"DATE")],
    [[Atom(b"DATE")]], "DATE", [Atom(b"DATE"), 5],
])
def test_parse_sort_criteria_rejects(items: Any) -> None:
    with pytest.raises(SortSyntaxError):
        parse_sort_criteria(items)


def record(uid: int, size: int = 100, arrival: float = 0.0) -> MessageRecord:
    return MessageRecord(uid, frozenset(), 1, size, arrival, str(uid))


def test_record_keys_do_not_read_headers() -> None:
    folder = RecordingFolder()  # empty: the records alone carry SIZE
    records = [record(10, 300), record(11, 100), record(12, 300), record(13, 200)]
    assert sort_uids(folder, records, SortCriteria.of("SIZE"), search_result_uids=[10, 11, 12, 13]) \
        == [11, 13, 10, 12]
    assert sort_uids(folder, records, SortCriteria.of(("SIZE", True)),
                     search_result_uids=[10, 11, 12, 13]) == [10, 12, 13, 11]
    assert folder.header_batches == []


def test_headers_are_read_in_bounded_batches(monkeypatch: Any) -> None:
    import xmail.protocols.imap.sort as sortmod

    monkeypatch.setattr(sortmod, "HEADER_BATCH", 3)
    froms = [f"From: u{100 - u}@example.com\r\n\r\n".encode() for u in range(1, 9)]
    folder = folder_of(froms, RecordingFolder)
    records = folder.records()
    assert sort_uids(folder, records, SortCriteria.of("FROM"), search_result_uids=range(1, 9)) \
        == [8, 7, 6, 5, 4, 3, 2, 1]
    assert folder.header_batches == [[1, 2, 3], [4, 5, 6], [7, 8]]


def test_collation() -> None:
    assert collation_key("MEETING") == collation_key("meeting")
    # RFC 5051 §2 maps to *simple* titlecase: "ß" has none, so it stays.
    assert collation_key("Straße") != collation_key("STRASSE")
    assert collation_key("ﬁle") == collation_key("file")  # NFKD compatibility ligature
    # Titlecase, not case folding: "[" and "_" (0x5B, 0x5F) after letters.
    assert sorted(["a_b", "ab", "a[c", "AC"], key=collation_key) == ["ab", "AC", "a[c", "a_b"]
    assert collation_key("_x") > collation_key("Zebra") and collation_key("[x") > collation_key("z")
    assert collation_key("Äpfel") < collation_key("Birne")  # Ä sorts with A
    assert collation_key("Émile") == collation_key("E\u0301mile")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 3), st.sampled_from(["a", "B", "b", "", "Ä"]),
                          st.integers(0, 3)), max_size=30),
       st.lists(st.tuples(st.sampled_from(["ARRIVAL", "SIZE", "SUBJECT", "FROM"]), st.booleans()),
                min_size=1, max_size=3))
def test_sort_properties(rows: list[tuple[int, str, int]], spec: list[tuple[str, bool]]) -> None:
    folder = folder_of([f"Subject: {subj}\r\nFrom: {subj[::-1]}x@example.com\r\n\r\n".encode()
                        for _, subj, _ in rows])
    headers = dict(folder.headers_many(range(1, len(rows) + 1)))  # what the store derived
    # Records carry the rows' SIZE and ARRIVAL (sort_uids reads them from the records).
    records = [record(uid, size, float(arrival)) for uid, (size, _, arrival) in enumerate(rows, 1)]
    criteria = SortCriteria.of(*spec)
    result = sort_uids(folder, records, criteria, search_result_uids=range(1, len(rows) + 1))
    # A permutation of the input ...
    assert sorted(result) == list(range(1, len(rows) + 1))

    def value(uid: int, key: str) -> Any:
        r = records[uid - 1]
        return {"ARRIVAL": r.internaldate, "SIZE": r.size,
                "SUBJECT": collation_key(headers[uid][":base-subject"]),
                "FROM": collation_key(headers[uid][":sort-from"])}[key]

    # ... where each neighbouring pair is in order: the first criterion that
    # differs decides (descending under REVERSE), and full ties are in
    # ascending sequence order whatever REVERSE says.
    for a, b in zip(result, result[1:], strict=False):
        for key, reverse in spec:
            va, vb = value(a, key), value(b, key)
            if va != vb:
                assert (va > vb) if reverse else (va < vb)
                break
        else:
            assert a < b


# --- ESORT ---------------------------------------------------------------------------------


def test_esort_result() -> None:
    order = [4, 1, 2, 3, 7, 6, 9]
    assert esort_result(order, {"MIN", "MAX", "ALL", "COUNT"}) == [
        ("MIN", "4"), ("MAX", "9"), ("ALL", "4,1:3,7,6,9"), ("COUNT", "7")]
    assert esort_result(order, {"COUNT"}) == [("COUNT", "7")]
    assert esort_result([], {"MIN", "MAX", "ALL", "COUNT"}) == [("COUNT", "0")]
    assert esort_result([], {"ALL"}) == []


def test_sort_order_set_never_sends_descending_ranges() -> None:
    # RFC 5267 §3.2: 12:10 SHOULD be avoided; descending runs stay single.
    assert sort_order_set([12, 11, 10]) == "12,11,10"
    assert sort_order_set([10, 11, 12]) == "10:12"
    assert sort_order_set([5]) == "5"
    assert sort_order_set([1, 2, 4, 5, 3]) == "1:2,4:5,3"


def test_esort_response() -> None:
    assert esort_response(b"A282", [4, 1, 2], {"MIN"}, uid=False) == b'ESEARCH (TAG "A282") MIN 4'
    assert esort_response(b"a", [4, 1, 2], {"ALL", "COUNT", "MAX"}, uid=True) == \
        b'ESEARCH (TAG "a") UID MAX 2 ALL 4,1:2 COUNT 3'


def test_esort_on_the_fixture(fixture: Any) -> None:
    # RFC 5267 §3.3 style: SORT RETURN (MIN MAX ALL) (REVERSE DATE) ...
    order = fixture.sort("REVERSE DATE")
    assert esort_result(order, parse_esort_returns([Atom(b"min"), Atom(b"MAX"), Atom(b"ALL")])) == [
        ("MIN", "12"), ("MAX", "9"), ("ALL", "12,11,10,6:7,3,2,1,8,5,4,9")]  # 6,7 ascend


def test_parse_esort_returns() -> None:
    assert parse_esort_returns([]) == frozenset({"ALL"})  # RFC 4731 §3.1: RETURN () is ALL
    assert parse_esort_returns([Atom(b"count"), Atom(b"MIN")]) == frozenset({"COUNT", "MIN"})
    for bad in ([Atom(b"PARTIAL")], [Atom(b"SAVE")], "ALL", [[Atom(b"ALL")]]):
        with pytest.raises(SortSyntaxError):
            parse_esort_returns(bad)
