"""IMAP command grammar: tokens -> typed requests."""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmail.protocols.imap.grammar import (
    AppendArgs,
    BadCharset,
    GrammarError,
    ListArgs,
    compress_numbers,
    format_seqset,
    mailbox_name,
    parse_command,
    parse_date_time,
    parse_seqset,
)
from xmail.protocols.imap.model import (
    STAR,
    FetchAtt,
    SearchAnd,
    SearchKey,
    SearchNot,
    SearchOr,
    Section,
    SeqRange,
    SeqSet,
)
from xmail.protocols.imap.response import encode_mailbox
from xmail.protocols.imap.tokenizer import Atom, Command, CommandReader, QuotedString


def parse(line: bytes) -> Any:
    reader = CommandReader(literal_limit=lambda _: 10**6)
    reader.feed(line + b"\r\n")
    while True:
        event = reader.next_event()
        assert event is not None
        if isinstance(event, Command):
            return parse_command(event.items)


def test_seqset_with_star_and_reversed_ranges() -> None:
    assert parse_seqset("1:*,5,9:7") == SeqSet((SeqRange(1, STAR), SeqRange(5, 5), SeqRange(9, 7)))


@pytest.mark.parametrize("bad", ["", "0", "1:", ":1", "1,,2", "a", "1:2:3", "4294967296", "-1"])
def test_invalid_seqsets(bad: str) -> None:
    with pytest.raises(GrammarError):
        parse_seqset(bad)


numbers = st.one_of(st.integers(1, 4294967295), st.just(STAR))


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(numbers, numbers), min_size=1, max_size=8))
def test_seqset_round_trip(ranges: list[tuple[int, int]]) -> None:
    seqset = SeqSet(tuple(SeqRange(a, b) for a, b in ranges))
    assert parse_seqset(format_seqset(seqset)) == seqset


@given(st.sets(st.integers(1, 500), max_size=60))
def test_compress_numbers_round_trip(values: set[int]) -> None:
    text = compress_numbers(values)
    if not values:
        assert text == ""
        return
    expanded = set()
    for r in parse_seqset(text).ranges:
        expanded.update(range(min(r.low, r.high), max(r.low, r.high) + 1))
    assert expanded == values


def test_fetch_attributes() -> None:
    req = parse(b"a UID FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (From to)]<0.10> "
                b"BODY[1.2.MIME] RFC822.SIZE)")
    assert req.uid and req.name == "FETCH"
    assert req.args.atts == (
        FetchAtt("FLAGS"),
        FetchAtt("BODY[]", Section((), "HEADER.FIELDS", ("FROM", "TO")), (0, 10), True),
        FetchAtt("BODY[]", Section((1, 2), "MIME")),
        FetchAtt("RFC822.SIZE"),
    )
    assert req.args.atts[1].response_name() == "BODY[HEADER.FIELDS (FROM TO)]<0>"


def test_fetch_macros() -> None:
    assert [a.name for a in parse(b"a FETCH 1 FAST").args.atts] == ["FLAGS", "INTERNALDATE", "RFC822.SIZE"]
    assert parse(b"a FETCH 1 body[]").args.atts == (FetchAtt("BODY[]", Section()),)


@pytest.mark.parametrize("bad", [
    b"a FETCH 1 (BODY[MIME])", b"a FETCH 1 (BODY[HEADER.FIELDS])", b"a FETCH 1 (BODY[0])",
    b"a FETCH 1 (BODY[]<0.0>)", b"a FETCH 1 ()", b"a FETCH 1 (FOO)", b"a FETCH x FLAGS",
])
def test_fetch_errors(bad: bytes) -> None:
    with pytest.raises(GrammarError):
        parse(bad)


def test_search_tree() -> None:
    req = parse(b'a SEARCH CHARSET UTF-8 OR (FROM x SINCE 1-Feb-2020) NOT SUBJECT {3}\r\n\xe4\xb8\xad 2:4')
    assert req.args.key == SearchAnd((
        SearchOr(
            SearchAnd((SearchKey("FROM", ("x",)), SearchKey("SINCE", (datetime.date(2020, 2, 1),)))),
            SearchNot(SearchKey("SUBJECT", ("中",))),
        ),
        SearchKey("SEQSET", (SeqSet((SeqRange(2, 4),)),)),
    ))


def test_search_all_keys_parse() -> None:
    req = parse(b'a UID SEARCH ALL ANSWERED BCC x BEFORE 1-Jan-2000 BODY y CC z DELETED DRAFT FLAGGED '
                b'HEADER X-Foo bar KEYWORD $Work LARGER 10 NEW OLD ON 2-Jan-2000 RECENT SEEN '
                b'SENTBEFORE 1-Jan-2000 SENTON 1-Jan-2000 SENTSINCE 1-Jan-2000 SINCE 1-Jan-2000 '
                b'SMALLER 99 SUBJECT s TEXT t TO u UID 1:* UNANSWERED UNDELETED UNDRAFT UNFLAGGED '
                b'UNKEYWORD foo UNSEEN')
    names = [k.name for k in req.args.key.keys]
    assert names == ("ALL ANSWERED BCC BEFORE BODY CC DELETED DRAFT FLAGGED HEADER KEYWORD LARGER NEW OLD "
                     "ON RECENT SEEN SENTBEFORE SENTON SENTSINCE SINCE SMALLER SUBJECT TEXT TO UID "
                     "UNANSWERED UNDELETED UNDRAFT UNFLAGGED UNKEYWORD UNSEEN").split()
    assert req.args.key.keys[9] == SearchKey("HEADER", ("X-Foo", "bar"))


def test_search_charset_and_esearch() -> None:
    with pytest.raises(BadCharset):
        parse(b"a SEARCH CHARSET KOI8-R ALL")
    req = parse(b"a SEARCH RETURN (MIN COUNT) UNSEEN")
    assert req.args.returns == frozenset({"MIN", "COUNT"})
    assert parse(b"a SEARCH RETURN () ALL").args.returns == frozenset({"ALL"})
    assert parse(b"a SEARCH RETURN (SAVE) ALL").args.returns == frozenset({"SAVE"})  # RFC 5182
    with pytest.raises(GrammarError):
        parse(b"a SEARCH RETURN (BOGUS) ALL")


def test_store_forms() -> None:
    req = parse(b"a STORE 1:3 +FLAGS.SILENT (\\Deleted $Junk)")
    assert (req.args.mode, req.args.silent, req.args.flags) == ("add", True, ("\\Deleted", "$Junk"))
    req = parse(b"a STORE 1 -flags \\seen \\Flagged")
    assert (req.args.mode, req.args.flags) == ("remove", ("\\Seen", "\\Flagged"))
    assert parse(b"a STORE 1 FLAGS ()").args.flags == ()
    for bad in (b"a STORE 1 +FLAGS (\\Recent)", b"a STORE 1 +FLAGS (\\Bogus)", b"a STORE 1 XFLAGS x",
                b"a STORE 1 FLAGS"):
        with pytest.raises(GrammarError):
            parse(bad)


def test_append_with_flags_and_date() -> None:
    req = parse(b'a APPEND "Sent" (\\Seen) "05-Mar-2021 10:11:12 +0100" {5}\r\nhello')
    assert req.args == AppendArgs("Sent", ("\\Seen",), 1614935472.0, b"hello")
    assert parse(b"a APPEND inbox {2}\r\nhi").args == AppendArgs("INBOX", (), None, b"hi")
    with pytest.raises(GrammarError):
        parse(b'a APPEND INBOX "32-Jan-2020 00:00:00 +0000" {2}\r\nhi')


def test_date_time() -> None:
    assert parse_date_time(" 1-Jan-1970 00:00:00 +0000") == 0.0
    assert parse_date_time("01-Jan-1970 01:00:00 +0100") == 0.0


def test_list_forms() -> None:
    assert parse(b'a LIST "" *').args == ListArgs("", ("*",))
    req = parse(b'a LIST (SUBSCRIBED RECURSIVEMATCH) "" ("INBOX" %) '
                b"RETURN (CHILDREN STATUS (MESSAGES UNSEEN))")
    assert req.args.selection == frozenset({"SUBSCRIBED", "RECURSIVEMATCH"})
    assert req.args.patterns == ("INBOX", "%")
    assert req.args.returns == frozenset({"CHILDREN"})
    assert req.args.status_items == ("MESSAGES", "UNSEEN")
    with pytest.raises(GrammarError):
        parse(b'a LIST (RECURSIVEMATCH) "" *')


def test_create_special_use() -> None:
    req = parse(b"a CREATE Stuff (USE (\\Archive))")
    assert req.args.special_use == ("\\Archive",)
    with pytest.raises(GrammarError):
        parse(b"a CREATE Stuff (USE (\\Bogus))")


def test_chinese_mailbox_names_round_trip() -> None:
    name = "工作/报告 2024"
    wire = encode_mailbox(name)
    assert wire.isascii()
    assert parse(b'a SELECT "' + wire + b'"').args == name
    assert mailbox_name(wire) == name
    # Raw UTF-8 from lax clients is accepted too.
    assert parse(b'a SELECT "' + name.encode() + b'"').args == name


def test_inbox_is_case_insensitive() -> None:
    assert parse(b"a SELECT inbox").args == "INBOX"
    assert parse(b"a SELECT Inbox/sub").args == "INBOX/sub"


def test_authenticate_and_login() -> None:
    req = parse(b"a AUTHENTICATE plain AGFAYgBj")
    assert (req.args.mechanism, req.args.initial_response) == ("PLAIN", b"AGFAYgBj")
    assert parse(b"a AUTHENTICATE PLAIN =").args.initial_response == b""
    assert parse(b'a LOGIN {3}\r\nbob "p w"').args == ("bob", "p w")


def test_id_and_enable() -> None:
    assert parse(b'a ID ("name" "x" "version" NIL)').args.params == {"name": "x", "version": None}
    assert parse(b"a ID NIL").args.params is None
    assert parse(b"a ENABLE CONDSTORE utf8=accept").args == ("CONDSTORE", "UTF8=ACCEPT")


@pytest.mark.parametrize("bad", [
    b"a NOOP extra", b"a UID NOOP", b"a BOGUS", b"+ NOOP", b"a SELECT", b"a RENAME x",
    b"a STATUS x (BOGUS)", b"a COPY 1", b"a UID EXPUNGE", b"a SEARCH", b"a SEARCH ()",
])
def test_syntax_errors(bad: bytes) -> None:
    with pytest.raises(GrammarError):
        parse(bad)


# --- property: any token tree parses or raises a grammar error -----------------------------

_words = st.sampled_from([
    b"FETCH", b"UID", b"STORE", b"SEARCH", b"LIST", b"SELECT", b"APPEND", b"COPY", b"MOVE", b"STATUS",
    b"1", b"1:*", b"*", b"4:2", b"FLAGS", b"+FLAGS.SILENT", b"BODY[", b"BODY.PEEK[HEADER.FIELDS", b"]",
    b"]<0.5>", b"BODY[1.MIME]", b"OR", b"NOT", b"CHARSET", b"UTF-8", b"RETURN", b"\\Seen", b"\\Bogus",
    b"SINCE", b"1-Jan-2020", b"HEADER", b"LARGER", b"x", b"INBOX", b"SORT", b"THREAD", b"REFERENCES",
    b"SUBJECT", b"REVERSE", b"ID", b"NIL", b"CREATE", b"USE", b"\\Sent", b"AUTHENTICATE", b"PLAIN",
])
_tokens = st.recursive(
    st.one_of(_words.map(Atom), st.binary(max_size=8).map(QuotedString)),
    lambda children: st.lists(children, max_size=4),
    max_leaves=16,
)


@settings(max_examples=500, deadline=None)
@given(st.lists(_tokens, max_size=8), st.booleans())
def test_random_commands_parse_or_fail_cleanly(items: list[Any], uid: bool) -> None:
    line = [Atom(b"t1")] + ([Atom(b"UID")] if uid else []) + items
    try:
        parse_command(line)
    except (GrammarError, BadCharset):
        pass
