"""Grammar and framing unit tests for the IMAP extensions of issue 15
(transcripts are in test_imap_extensions.py)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.protocols.test_imap_tokenizer import events
from xmail.protocols.imap import binary
from xmail.protocols.imap.grammar import GrammarError, parse_command
from xmail.protocols.imap.model import FetchAtt, Section
from xmail.protocols.imap.tokenizer import (
    Atom,
    Command,
    CommandReader,
    ContinueLiteral,
    Literal8String,
    SpooledLiteral,
)


def parse(line: bytes) -> Any:
    reader = CommandReader(literal_limit=lambda items: 1 << 20)
    reader.feed(line)
    out = []
    while (event := reader.next_event()) is not None:
        out.append(event)
    assert isinstance(out[-1], Command), out
    return parse_command(out[-1].items)


# --- BINARY (RFC 3516) ---------------------------------------------------------------------------


def test_literal8_is_framed_whole_and_byte_by_byte() -> None:
    got = events(b"a APPEND INBOX ~{3}\r\n\0\1\2\r\n")
    assert got == [ContinueLiteral(3), Command([Atom(b"a"), Atom(b"APPEND"), Atom(b"INBOX"),
                                                Literal8String(b"\0\1\2")])]
    assert isinstance(got[1].items[3], Literal8String)
    got = events(b"a APPEND INBOX ~{2+}\r\nxy\r\n")
    assert got == [Command([Atom(b"a"), Atom(b"APPEND"), Atom(b"INBOX"), Literal8String(b"xy")])]


def test_spooled_literal8_is_marked() -> None:
    class Sink:
        def __init__(self) -> None:
            self.data = b""

        def write(self, data: bytes) -> None:
            self.data += data

        def finish(self) -> SpooledLiteral:
            return SpooledLiteral("/nowhere", len(self.data))

        def release(self) -> None:
            pass

    got = events(b"a APPEND INBOX ~{5+}\r\nhello\r\n", spool=lambda size: Sink(), spool_threshold=2)
    assert got[0].items[3] == SpooledLiteral("/nowhere", 5, literal8=True)


def test_binary_fetch_attributes() -> None:
    req = parse(b"a FETCH 1 (BINARY[1.2]<0.10> BINARY.PEEK[] BINARY.SIZE[3])\r\n")
    assert req.args.atts == (
        FetchAtt("BINARY[]", section=Section(part=(1, 2)), partial=(0, 10)),
        FetchAtt("BINARY[]", section=Section(), peek=True),
        FetchAtt("BINARY.SIZE", section=Section(part=(3,))),
    )
    assert [a.response_name() for a in req.args.atts] == ["BINARY[1.2]<0>", "BINARY[]", "BINARY.SIZE[3]"]


@pytest.mark.parametrize("bad", [b"BINARY[1.TEXT]", b"BINARY[0]", b"BINARY.SIZE[1]<0.5>", b"BINARY[1]<0.0>",
                                 b"BINARY[1..2]", b"BINARY", b"BINARY.PEEK[1"])
def test_binary_fetch_errors(bad: bytes) -> None:
    with pytest.raises(GrammarError):
        parse(b"a FETCH 1 (" + bad + b")\r\n")


def test_decode() -> None:
    assert binary.decode(b"aGVs\r\nbG8=\r\n", "base64") == b"hello"
    assert binary.decode(b"aGVsbG8", "base64") == b"hello"  # missing padding
    assert binary.decode(b"caf=C3=A9=\r\n!", "quoted-printable") == "café!".encode()
    assert binary.decode(b"\0x", "binary") == b"\0x"
    with pytest.raises(binary.UnknownCTE):
        binary.decode(b"x", "x-uuencode")
    assert binary.literal(b"a\0") == b"~{2}\r\na\0"
    assert binary.literal(b"ab") == b"{2}\r\nab"


# --- SEARCHRES (RFC 5182) ------------------------------------------------------------------------


def test_dollar_sequence_set() -> None:
    from xmail.protocols.imap.grammar import SAVED_RESULT
    from xmail.protocols.imap.model import SearchKey

    assert parse(b"a FETCH $ FLAGS\r\n").args.seqset == SAVED_RESULT
    assert parse(b"a UID COPY $ Trash\r\n").args.seqset == SAVED_RESULT
    assert parse(b"a UID EXPUNGE $\r\n").args == SAVED_RESULT
    assert parse(b"a SEARCH $ UID $\r\n").args.key.keys == (
        SearchKey("SEQSET", (SAVED_RESULT,)), SearchKey("UID", (SAVED_RESULT,)))
    with pytest.raises(GrammarError):
        parse(b"a FETCH $:4 FLAGS\r\n")
    with pytest.raises(GrammarError) as info:
        parse(b"a SEARCH RETURN (SAVE) BOGUS\r\n")
    assert info.value.resets_search_result  # type: ignore[attr-defined]


# --- MULTISEARCH (RFC 7377), PARTIAL (RFC 9394) ---------------------------------------------------


def test_esearch_sources() -> None:
    req = parse(b'a ESEARCH IN (personal subtree (Projects "Sent Items") mailboxes INBOX) '
                b"RETURN (COUNT) ALL\r\n")
    assert req.args.sources == (("personal", ()), ("subtree", ("Projects", "Sent Items")),
                                ("mailboxes", ("INBOX",)))
    assert req.args.search.returns == frozenset({"COUNT"})
    assert parse(b"a ESEARCH UNSEEN\r\n").args.sources is None


@pytest.mark.parametrize("bad", [b"IN () ALL", b"IN (nowhere) ALL", b"IN (subtree) ALL",
                                 b"IN (personal) RETURN (SAVE) ALL", b"IN (personal (DEPTH 1)) ALL",
                                 b"IN (mailboxes ()) ALL"])
def test_esearch_errors(bad: bytes) -> None:
    with pytest.raises(GrammarError):
        parse(b"a ESEARCH " + bad + b"\r\n")


def test_partial_ranges() -> None:
    from xmail.protocols.imap.grammar import parse_partial_range
    from xmail.protocols.imap.results import esearch_items, partial_slice

    assert parse_partial_range("1:100") == (1, 100)
    assert parse_partial_range("100:1") == (1, 100)
    assert parse_partial_range("-1:-10") == (-1, -10)
    for bad in ("0:5", "-1:5", "1", "a:b", "1:99999999999"):
        with pytest.raises(GrammarError):
            parse_partial_range(bad)
    numbers = list(range(10, 30))
    assert partial_slice(numbers, (1, 3)) == [10, 11, 12]
    assert partial_slice(numbers, (-1, -3)) == [27, 28, 29]
    assert partial_slice(numbers, (-19, -40)) == [10, 11]
    assert esearch_items([], frozenset({"COUNT"}), (1, 5)) == [b"PARTIAL (1:5 NIL)", b"COUNT 0"]
    req = parse(b"a UID SORT RETURN (PARTIAL 1:10) (DATE) UTF-8 ALL\r\n")
    assert req.args.partial == (1, 10) and req.args.returns == frozenset({"PARTIAL"})
    with pytest.raises(GrammarError):
        parse(b"a SORT RETURN (ALL PARTIAL 1:10) (DATE) UTF-8 ALL\r\n")
