# -*- test-case-name: tests.protocols.test_imap_search_model -*-
"""xmail.protocols.imap.search: every RFC 3501 SEARCH key on a fixture folder.

The fixture is the package's in-memory IFolder (xmail.store.memory) in a
thin subclass, AccessPathFolder, so that each key's result can be checked by
hand: it switches off the accessors the evaluator treats as optional (it
picks `headers`, `headers_many`, `metas_many`, `body_search` with getattr),
counts every access, and can lose a message behind the evaluator's back.
The last tests run the same searches on the real MailStore (sync mode) and on
the plain MemoryFolder (verifyObject IFolder, every accessor present).
"""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmail.message import TEXT_DIGEST_LIMIT
from xmail.protocols.imap.model import (
    STAR,
    SearchAnd,
    SearchKey,
    SearchNot,
    SearchOr,
    SeqRange,
    SeqSet,
)
from xmail.protocols.imap.search import SearchError, SeqSetMatcher, needs_message_data, run_search
from xmail.store.interfaces import MessageMeta, NoSuchMessage
from xmail.store.memory import MemoryFolder


def ts(*args: int) -> float:
    return datetime(*args, tzinfo=UTC).timestamp()


def crlf(text: str) -> bytes:
    return text.replace("\n", "\r\n").encode("utf-8")


MESSAGES: dict[int, tuple[bytes, frozenset[str], float]] = {
    1: (crlf("From: Alice Example <alice@example.org>\n"
             "To: Bob <bob@example.com>\n"
             "Subject: Lunch plans\n"
             "Date: Tue, 1 Feb 1994 23:00:00 -0800\n"
             "\n"
             "Shall we meet at noon?\n"),
        frozenset({"\\Seen"}), ts(2026, 11, 1, 10, 0, 0)),
    2: (crlf("From: =?utf-8?q?B=C3=B6b?= <bob@example.com>\n"
             "To: alice@example.org\n"
             "Subject: =?utf-8?q?Gr=C3=BC=C3=9Fe?= from Munich\n"
             "Date: Wed, 2 Feb 1994 01:00:00 +0200\n"
             "Content-Type: text/plain; charset=utf-8\n"
             "Content-Transfer-Encoding: quoted-printable\n"
             "\n"
             "Die Stra=C3=9Fe ist lang.\n"),
        frozenset({"\\Flagged", "$Important"}), ts(2026, 11, 2, 23, 59, 59)),
    5: (crlf("From: carol@example.net\n"
             "To: team@example.com\n"
             "Cc: Dave <dave@example.com>\n"
             "Bcc: secret@example.com\n"
             "Subject: Minutes\n"
             "X-Priority: 1 (Highest)\n"
             "X-Mailer: =?utf-8?q?M=C3=A4iler?=\n"
             "Content-Type: text/html; charset=utf-8\n"
             "\n"
             "<p>The <b>budget</b> was approved &amp; signed.</p>\n"),
        frozenset({"\\Answered", "\\Deleted"}), ts(2026, 11, 3, 0, 0, 0)),
    7: (crlf("From: big@example.com\n"
             "Subject: Big one\n"
             "Date: Thu, 3 Feb 1994 12:00:00 +0000\n"
             "\n") + b"filler line of text\r\n" * (TEXT_DIGEST_LIMIT // 10) + b"HIDDEN NEEDLE\r\n",
        frozenset({"\\Draft", "$label1"}), ts(2026, 11, 4, 12, 0, 0)),
    9: (crlf("From: dave@example.com\n"
             "To: carol@example.net\n"
             "Subject: Re: Minutes\n"
             "Date: Fri, 4 Feb 1994 08:00:00 +0000\n"
             "MIME-Version: 1.0\n"
             "Content-Type: multipart/mixed; boundary=xyz\n"
             "\n"
             "--xyz\n"
             "Content-Type: text/plain\n"
             "\n"
             "see attachment\n"
             "--xyz\n"
             "Content-Type: text/plain; charset=utf-8; name=notes.txt\n"
             "Content-Transfer-Encoding: base64\n"
             "\n"
             "Q2Fmw6kgbm90ZXMgLSBFbGxpbmdzb24=\n"
             "--xyz--\n"),
        frozenset(), ts(2026, 11, 5, 8, 0, 0)),
}
ALL_UIDS = [1, 2, 5, 7, 9]
RECENT = {7, 9}
NOW = ts(2026, 11, 5, 12, 0, 0)


class AccessPathFolder(MemoryFolder):
    """The package's in-memory IFolder with the accessors SEARCH may use
    switched on or off (`bulk_headers`: False -> meta only, True -> headers,
    "many" -> headers_many + metas_many; body_search and note_body_text are
    off, so BODY reads cached digests), every access counted, and UIDs
    exactly as given (gaps are expunged fillers)."""

    def __init__(self, messages: dict[int, tuple[bytes, frozenset[str], float]], *, bulk_headers: bool | str,
                 cache: bool = True):
        super().__init__()
        top = max(messages, default=0)
        for uid in range(1, top + 1):
            data, flags, when = messages.get(uid, (b"Subject: gap\r\n\r\n", frozenset(), 0.0))
            assert self.add(data, flags, when) == uid
        self.expunge([uid for uid in range(1, top + 1) if uid not in messages])
        self.cache = cache
        self.forgotten: set[int] = set()  # metas gone (forget_meta)
        self.vanished: set[int] = set()  # files gone too (vanish)
        self.meta_calls = 0
        self.header_calls = 0
        self.opens = 0
        self.batches: list[list[int]] = []
        self.meta_batches: list[list[int]] = []
        # Instance attributes shadow the methods: search.py picks accessors with getattr.
        self.body_search = self.note_body_text = None  # type: ignore[assignment]
        if bulk_headers == "many":
            self.headers = None  # type: ignore[assignment]
            self.metas_many = self._metas_many
        else:
            self.headers_many = None  # type: ignore[assignment]
            if not bulk_headers:
                self.headers = None  # type: ignore[assignment]

    def forget_meta(self, uid: int) -> None:
        """Its meta is gone (expunged meanwhile), its file still readable."""
        self.forgotten.add(uid)

    def vanish(self, uid: int) -> None:
        """Expunged by another session after the records were read: the
        records still list it, nothing else knows it."""
        self.forgotten.add(uid)
        self.vanished.add(uid)

    def _parsed(self, uid: int) -> MessageMeta:
        if uid in self.forgotten:
            raise NoSuchMessage(str(uid))
        return super().meta(uid) if self.cache else MessageMeta()

    def meta(self, uid: int) -> MessageMeta:
        self.meta_calls += 1
        return self._parsed(uid)

    def headers(self, uid: int) -> dict[str, str]:  # type: ignore[override]
        self.header_calls += 1
        return self._parsed(uid).headers

    def headers_many(self, uids: Any) -> list[tuple[int, dict[str, str]]]:  # type: ignore[override]
        self.batches.append(list(uids))
        return [(uid, self._parsed(uid).headers) for uid in uids if uid not in self.forgotten]

    def _metas_many(self, uids: list[int]) -> Any:
        self.meta_batches.append(list(uids))
        return [(uid, self._parsed(uid)) for uid in uids if uid not in self.forgotten]

    def open_message(self, uid: int) -> Any:
        self.opens += 1
        if uid in self.vanished:
            raise NoSuchMessage(str(uid))
        return super().open_message(uid)


@pytest.fixture(params=[False, True, "many"], ids=["meta", "headers", "headers-many"])
def folder(request: Any) -> AccessPathFolder:
    return AccessPathFolder(MESSAGES, bulk_headers=request.param)


def search(folder: Any, *keys: Any, recent: set[int] | None = None) -> list[int]:
    return run_search(SearchAnd(tuple(keys)), folder, folder.records(),
                      recent_uids=RECENT if recent is None else recent, now=NOW)


def key(name: str, *args: Any) -> SearchKey:
    return SearchKey(name, args)


def seqset(*ranges: tuple[int, int]) -> SeqSet:
    return SeqSet(tuple(SeqRange(low, high) for low, high in ranges))


# --- keys one by one ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name, expected", [
    ("ALL", [1, 2, 5, 7, 9]),
    ("ANSWERED", [5]), ("UNANSWERED", [1, 2, 7, 9]),
    ("DELETED", [5]), ("UNDELETED", [1, 2, 7, 9]),
    ("DRAFT", [7]), ("UNDRAFT", [1, 2, 5, 9]),
    ("FLAGGED", [2]), ("UNFLAGGED", [1, 5, 7, 9]),
    ("SEEN", [1]), ("UNSEEN", [2, 5, 7, 9]),
    ("RECENT", [7, 9]), ("OLD", [1, 2, 5]),
    ("NEW", [7, 9]),  # RECENT and UNSEEN
])
def test_flag_keys_never_touch_meta(folder: AccessPathFolder, name: str, expected: list[int]) -> None:
    assert search(folder, key(name)) == expected
    assert folder.meta_calls == folder.header_calls == folder.opens == 0
    assert not needs_message_data(key(name))


def test_new_excludes_seen_recent(folder: AccessPathFolder) -> None:
    assert search(folder, key("NEW"), recent={1, 2}) == [2]


def test_keyword(folder: AccessPathFolder) -> None:
    assert search(folder, key("KEYWORD", "$Important")) == [2]
    assert search(folder, key("KEYWORD", "$important")) == [2]  # flags compare case-insensitively
    assert search(folder, key("UNKEYWORD", "$label1")) == [1, 2, 5, 9]
    assert search(folder, key("KEYWORD", "nothere")) == []
    assert search(folder, key("KEYWORD", "\\Seen")) == [1]


def test_sizes(folder: AccessPathFolder) -> None:
    sizes = {uid: len(data) for uid, (data, _f, _d) in MESSAGES.items()}
    threshold = sizes[2]
    assert search(folder, key("LARGER", threshold)) == sorted(u for u, s in sizes.items() if s > threshold)
    assert search(folder, key("SMALLER", threshold)) == sorted(u for u, s in sizes.items() if s < threshold)
    assert 2 not in search(folder, key("LARGER", threshold)) + search(folder, key("SMALLER", threshold))


@pytest.mark.parametrize("name, day, expected", [
    # INTERNALDATE days in UTC: 1 -> Nov 1, 2 -> Nov 2 (23:59:59), 5 -> Nov 3, 7 -> Nov 4, 9 -> Nov 5
    ("BEFORE", date(2026, 11, 3), [1, 2]),
    ("ON", date(2026, 11, 2), [2]),
    ("ON", date(2026, 11, 3), [5]),
    ("SINCE", date(2026, 11, 3), [5, 7, 9]),
    ("SINCE", date(2026, 11, 6), []),
    ("BEFORE", date(2026, 11, 1), []),
])
def test_internal_date_keys(folder: AccessPathFolder, name: str, day: date, expected: list[int]) -> None:
    assert search(folder, key(name, day)) == expected
    assert folder.meta_calls == folder.header_calls == 0


@pytest.mark.parametrize("name, day, expected", [
    # Date fields in their own zones: 1 -> 1994-02-01 (-0800, already the 2nd in UTC),
    # 2 -> 1994-02-02 (+0200, still the 1st in UTC), 7 -> 02-03, 9 -> 02-04;
    # 5 has no Date field and falls back to its INTERNALDATE day (2026-11-03).
    ("SENTON", date(1994, 2, 1), [1]),
    ("SENTON", date(1994, 2, 2), [2]),
    ("SENTBEFORE", date(1994, 2, 3), [1, 2]),
    ("SENTSINCE", date(1994, 2, 3), [5, 7, 9]),
    ("SENTON", date(2026, 11, 3), [5]),
])
def test_sent_date_keys(folder: AccessPathFolder, name: str, day: date, expected: list[int]) -> None:
    assert search(folder, key(name, day)) == expected
    assert folder.opens == 0


def test_date_argument_may_be_a_datetime(folder: AccessPathFolder) -> None:
    assert search(folder, key("ON", datetime(2026, 11, 2, 5, 0))) == [2]


def test_older_younger(folder: AccessPathFolder) -> None:
    # NOW is Nov 5 12:00 UTC; 9 arrived 4 hours earlier, 7 a day earlier
    assert search(folder, key("YOUNGER", 5 * 3600)) == [9]
    assert search(folder, key("OLDER", 5 * 3600)) == [1, 2, 5, 7]


def test_uid_sets(folder: AccessPathFolder) -> None:
    assert search(folder, key("UID", seqset((2, 5)))) == [2, 5]
    assert search(folder, key("UID", seqset((7, STAR)))) == [7, 9]
    assert search(folder, key("UID", seqset((STAR, STAR)))) == [9]
    assert search(folder, key("UID", seqset((100, STAR)))) == [9]  # RFC 3501 §6.4.8: n:* with n > max
    assert search(folder, key("UID", seqset((9, 1)))) == [1, 2, 5, 7, 9]  # reversed range
    assert search(folder, key("UID", seqset((3, 4), (6, 6)))) == []


def test_sequence_sets(folder: AccessPathFolder) -> None:
    # sequence numbers: 1->uid 1, 2->2, 3->5, 4->7, 5->9
    assert search(folder, key("SEQSET", seqset((2, 3)))) == [2, 5]
    assert search(folder, key("SEQSET", seqset((STAR, STAR)))) == [9]
    assert search(folder, key("SEQSET", seqset((4, STAR), (1, 1)))) == [1, 7, 9]
    assert search(folder, key("SEQSET", seqset((6, 10)))) == []


def test_modseq(folder: AccessPathFolder) -> None:
    # MODSEQs grow with the UIDs of the fixture; RFC 7162 §3.1.5: MODSEQ n matches modseq >= n
    modseq = {r.uid: r.modseq for r in folder.records()}
    assert modseq[1] < modseq[2] < modseq[5] < modseq[7] < modseq[9]
    assert search(folder, key("MODSEQ", modseq[5])) == [5, 7, 9]
    assert search(folder, key("MODSEQ", "/flags/\\draft", "all", modseq[7])) == [7, 9]


@pytest.mark.parametrize("name, needle, expected", [
    ("FROM", "alice", [1]),
    ("FROM", "ALICE EXAMPLE", [1]),
    ("FROM", "böb", [2]),  # RFC 2047 decoded
    ("FROM", "BÖB", [2]),  # Unicode case folding
    ("FROM", "example", [1, 2, 5, 7, 9]),
    ("TO", "alice@", [2]),
    ("TO", "carol", [9]),
    ("CC", "dave", [5]),
    ("BCC", "secret", [5]),
    ("SUBJECT", "minutes", [5, 9]),
    ("SUBJECT", "GRÜSSE", [2]),  # ß case-folds to ss
    ("SUBJECT", "grüße", [2]),
    ("SUBJECT", "", [1, 2, 5, 7, 9]),
    ("CC", "", [5]),  # the field must exist
    ("SUBJECT", "nothing like this", []),
])
def test_header_shortcut_keys(folder: AccessPathFolder, name: str, needle: str, expected: list[int]) -> None:
    assert search(folder, key(name, needle)) == expected
    assert folder.opens == 0


def test_header_key(folder: AccessPathFolder) -> None:
    assert search(folder, key("HEADER", "Subject", "lunch")) == [1]
    assert folder.opens == 0  # a cached field
    assert search(folder, key("HEADER", "X-Priority", "highest")) == [5]  # from the file
    assert search(folder, key("HEADER", "x-mailer", "MÄILER")) == [5]  # decoded there too
    assert search(folder, key("HEADER", "X-Priority", "")) == [5]  # "" -> has the field
    assert search(folder, key("HEADER", "Received", "")) == []


def test_body_key(folder: AccessPathFolder) -> None:
    assert search(folder, key("BODY", "noon")) == [1]
    assert search(folder, key("BODY", "STRASSE")) == [2]  # quoted-printable UTF-8, folded
    assert search(folder, key("BODY", "budget was approved & signed")) == [5]  # HTML, entity decoded
    assert search(folder, key("BODY", "café notes")) == [9]  # base64 attachment text
    assert search(folder, key("BODY", "lunch")) == []  # the subject is not the body
    opens_before = folder.opens
    assert search(folder, key("BODY", "hidden needle")) == [7]  # past the cached digest
    assert folder.opens - opens_before == 1  # only the message whose digest was cut


def test_text_key(folder: AccessPathFolder) -> None:
    assert search(folder, key("TEXT", "lunch")) == [1]  # header
    assert search(folder, key("TEXT", "noon")) == [1]  # body
    assert search(folder, key("TEXT", "highest")) == [5]  # an uncached header field
    assert search(folder, key("TEXT", "hidden needle")) == [7]
    assert search(folder, key("TEXT", "ellingson")) == [9]


# --- combinations ---------------------------------------------------------------------------------------


def test_not_or_and_groups(folder: AccessPathFolder) -> None:
    assert search(folder, SearchNot(key("SEEN"))) == [2, 5, 7, 9]
    assert search(folder, SearchOr(key("FLAGGED"), key("DRAFT"))) == [2, 7]
    assert search(folder, SearchOr(key("SUBJECT", "lunch"), key("UID", seqset((9, 9))))) == [1, 9]
    assert search(folder, key("UNSEEN"), SearchNot(key("SUBJECT", "minutes"))) == [2, 7]
    nested = SearchAnd((SearchOr(key("FROM", "carol"), key("FROM", "dave")), SearchNot(key("DELETED"))))
    assert search(folder, nested) == [9]
    assert search(folder, SearchNot(SearchNot(key("ANSWERED")))) == [5]


def test_cheap_keys_run_first(folder: AccessPathFolder) -> None:
    # SUBJECT after FLAGGED: only the one flagged message has its headers looked at
    assert search(folder, key("SUBJECT", "munich"), key("FLAGGED")) == [2]
    assert folder.meta_calls + folder.header_calls + len(folder.batches) == 1
    assert needs_message_data(SearchAnd((key("FLAGGED"), SearchNot(key("SUBJECT", "x")))))


def test_bulk_header_reads_are_batched() -> None:
    folder = AccessPathFolder(MESSAGES, bulk_headers="many")
    assert search(folder, key("SUBJECT", "minutes")) == [5, 9]
    assert folder.batches == [ALL_UIDS] and folder.meta_calls == 0
    folder.batches.clear()
    # records the cheap key rules out are still read in the batch, but only one batch
    assert search(folder, key("UNSEEN"), key("FROM", "dave")) == [9]
    assert folder.batches == [[2, 5, 7, 9]]
    folder.forget_meta(5)
    assert search(folder, key("SUBJECT", "minutes")) == [9]
    assert search(folder, key("BODY", "e")) == [1, 2, 7, 9]
    assert folder.meta_batches == [ALL_UIDS] and folder.meta_calls == 0  # 5's absence is remembered


def test_expunged_meanwhile_does_not_match() -> None:
    folder = AccessPathFolder(MESSAGES, bulk_headers=False)
    folder.vanish(5)
    assert search(folder, key("SUBJECT", "minutes")) == [9]
    assert search(folder, key("UNSEEN")) == [2, 5, 7, 9]  # records alone still list it


def test_uncached_messages_are_parsed_on_demand() -> None:
    folder = AccessPathFolder(MESSAGES, bulk_headers=False, cache=False)
    assert search(folder, key("SUBJECT", "minutes")) == [5, 9]
    assert search(folder, key("BODY", "strasse")) == [2]


def test_bad_keys() -> None:
    folder = AccessPathFolder(MESSAGES, bulk_headers=False)
    for bad in (key("NOSUCHKEY"), key("LARGER", "big"), key("BEFORE", "yesterday"), key("HEADER", "x"),
                key("UID", "1:2")):
        with pytest.raises(SearchError):
            search(folder, bad)


def test_seqset_matcher_merges_ranges() -> None:
    matcher = SeqSetMatcher(seqset((1, 3), (2, 6), (10, 10), (STAR, 8)), star=20)
    members = [n for n in range(1, 25) if n in matcher]
    assert members == [1, 2, 3, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]


def test_empty_folder() -> None:
    folder = AccessPathFolder({}, bulk_headers=False)
    assert search(folder, key("ALL")) == []
    assert search(folder, key("UID", seqset((STAR, STAR)))) == []


# --- the real store ---------------------------------------------------------------------------------


@pytest.fixture
def store_folder(tmp_path: Any) -> Any:
    from xmail.config import Settings
    from xmail.db.environment import IndexEnvironment
    from xmail.store.mailstore import MailStore

    settings = Settings()
    server = dataclasses.replace(settings.server, data_dir=str(tmp_path))
    settings = dataclasses.replace(settings, server=server)
    env = IndexEnvironment(str(tmp_path / "index"))
    env.open()
    store = MailStore(env, settings, None, reactor=None)
    for uid in ALL_UIDS:
        data, flags, when = MESSAGES[uid]
        result: list[Any] = []
        store.deliver("user@example.com", data, flags=flags, internaldate=when).addBoth(result.append)
        assert not hasattr(result[0], "raiseException"), result[0]
    yield store.mailbox("user@example.com").folder("INBOX")
    env.close()


@pytest.fixture
def shipped_memory_folder() -> Any:
    """The package's in-memory IFolder (xmail.store.memory), every optional
    accessor present (headers, headers_many, body_search, note_body_text)."""
    from zope.interface.verify import verifyObject

    from xmail.store.interfaces import IFolder
    folder = MemoryFolder()
    for uid in ALL_UIDS:
        data, flags, when = MESSAGES[uid]
        folder.add(data, flags, when)
    assert verifyObject(IFolder, folder)
    return folder


@pytest.mark.parametrize("which", ["store_folder", "shipped_memory_folder"])
def test_searches_on_the_real_store(request: Any, which: str) -> None:
    store_folder = request.getfixturevalue(which)
    records = store_folder.records()
    assert len(records) == 5
    uid_of = [r.uid for r in records]  # the store numbers its own UIDs 1..5

    def run(*keys: Any) -> list[int]:
        return run_search(SearchAnd(tuple(keys)), store_folder, records, recent_uids=set(), now=NOW)

    assert run(key("ALL")) == uid_of
    assert run(key("UNSEEN")) == [uid_of[i] for i in (1, 2, 3, 4)]
    assert run(key("SUBJECT", "minutes")) == [uid_of[2], uid_of[4]]
    assert run(key("FROM", "böb")) == [uid_of[1]]
    assert run(key("BODY", "strasse")) == [uid_of[1]]
    assert run(key("BODY", "hidden needle")) == [uid_of[3]]
    assert run(key("HEADER", "X-Priority", "highest")) == [uid_of[2]]
    assert run(key("SENTON", date(1994, 2, 1))) == [uid_of[0]]
    assert run(key("ON", date(2026, 11, 2))) == [uid_of[1]]
    assert run(key("KEYWORD", "$Important")) == [uid_of[1]]


# --- algebra over random expressions -----------------------------------------------------------------------

_leaves = st.sampled_from([
    key("SEEN"), key("UNSEEN"), key("FLAGGED"), key("DELETED"), key("RECENT"), key("NEW"), key("ALL"),
    key("LARGER", 300), key("SMALLER", 400), key("SINCE", date(2026, 11, 3)), key("ON", date(2026, 11, 2)),
    key("SENTBEFORE", date(1994, 2, 3)), key("SUBJECT", "minutes"), key("FROM", "example.com"),
    key("BODY", "noon"), key("TEXT", "highest"), key("HEADER", "X-Priority", "1"),
    key("UID", seqset((2, 7))), key("SEQSET", seqset((STAR, 4))), key("KEYWORD", "$label1"),
])
_exprs = st.recursive(_leaves, lambda inner: st.one_of(
    inner.map(SearchNot),
    st.tuples(inner, inner).map(lambda pair: SearchOr(*pair)),
    st.lists(inner, min_size=1, max_size=3).map(lambda keys: SearchAnd(tuple(keys))),
), max_leaves=6)
_FOLDER = AccessPathFolder(MESSAGES, bulk_headers="many")


def _run(expr: Any) -> list[int]:
    return run_search(expr, _FOLDER, _FOLDER.records(), recent_uids=RECENT, now=NOW)


@settings(max_examples=200, deadline=None)
@given(_exprs, _exprs)
def test_search_algebra(a: Any, b: Any) -> None:
    ra, rb = set(_run(a)), set(_run(b))
    assert _run(a) == sorted(ra) and ra <= set(ALL_UIDS)
    assert set(_run(SearchNot(a))) == set(ALL_UIDS) - ra
    assert set(_run(SearchOr(a, b))) == ra | rb == set(_run(SearchOr(b, a)))
    assert set(_run(SearchAnd((a, b)))) == ra & rb == set(_run(SearchAnd((b, a))))
