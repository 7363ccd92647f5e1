"""The sans-IO IMAP command framing: every case runs whole and byte by byte."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmail.protocols.imap.response import render
from xmail.protocols.imap.tokenizer import (
    Atom,
    Command,
    CommandReader,
    ContinueLiteral,
    LiteralString,
    QuotedString,
    RawLine,
    Rejected,
    SpooledLiteral,
)


def events(data: bytes, *, raw_after: int | None = None, **kw: Any) -> list[Any]:
    """Feed data whole and one byte at a time; both must give the same events."""
    results = []
    for step in (len(data) or 1, 1):
        reader = CommandReader(**kw)
        out: list[Any] = []
        for i in range(0, len(data), step):
            reader.feed(data[i : i + step])
            while (event := reader.next_event()) is not None:
                out.append(event)
                if raw_after is not None and len(out) == raw_after:
                    reader.expect_raw_line()
        results.append(out)
    assert results[0] == results[1]
    return results[0]


def test_simple_command() -> None:
    assert events(b"a1 NOOP\r\n") == [Command([Atom(b"a1"), Atom(b"NOOP")])]


def test_bare_lf_is_accepted() -> None:
    assert events(b"a1 NOOP\n") == [Command([Atom(b"a1"), Atom(b"NOOP")])]


def test_quoted_with_escapes() -> None:
    [cmd] = events(b'a LOGIN "us\\"er" "p\\\\w"\r\n')
    assert cmd.items[2:] == [QuotedString(b'us"er'), QuotedString(b"p\\w")]
    assert isinstance(cmd.items[2], QuotedString)


def test_bad_escape_is_rejected_and_session_goes_on() -> None:
    evs = events(b'a LOGIN "x\\y" z\r\nb NOOP\r\n')
    assert evs == [Rejected(b"a", "bad escape in quoted string"), Command([Atom(b"b"), Atom(b"NOOP")])]


def test_synchronizing_literal() -> None:
    evs = events(b"a LOGIN {5}\r\nalice {3}\r\npw!\r\n")
    assert evs == [
        ContinueLiteral(5),
        ContinueLiteral(3),
        Command([Atom(b"a"), Atom(b"LOGIN"), LiteralString(b"alice"), LiteralString(b"pw!")]),
    ]


def test_non_synchronizing_literal_needs_no_continuation() -> None:
    evs = events(b"a LOGIN {5+}\r\nalice {3+}\r\npw!\r\n")
    assert evs == [Command([Atom(b"a"), Atom(b"LOGIN"), LiteralString(b"alice"), LiteralString(b"pw!")])]


def test_literal_may_contain_crlf_and_parens() -> None:
    body = b"Subject: (x)\r\n\r\n\"hi\"\r\n"
    [cont, cmd] = events(b"a APPEND INBOX {%d}\r\n" % len(body) + body + b"\r\n")
    assert cont == ContinueLiteral(len(body))
    assert cmd.items[-1] == body


def test_literal_inside_list() -> None:
    [cmd] = events(b"a ID (\"k\" {2+}\r\nvv)\r\n")
    assert cmd.items[2] == [QuotedString(b"k"), LiteralString(b"vv")]


def test_nested_lists_and_brackets() -> None:
    [cmd] = events(b"a FETCH 1:* (FLAGS BODY.PEEK[HEADER.FIELDS (FROM TO)]<0.10>)\r\n")
    assert cmd.items[3] == [
        Atom(b"FLAGS"), Atom(b"BODY.PEEK[HEADER.FIELDS"), [Atom(b"FROM"), Atom(b"TO")], Atom(b"]<0.10>"),
    ]


def test_unbalanced_parentheses() -> None:
    assert events(b"a X (b\r\n") == [Rejected(b"a", "unbalanced parentheses")]
    assert events(b"a X b)\r\n") == [Rejected(b"a", "unbalanced parentheses")]


def test_nesting_limit() -> None:
    evs = events(b"a X " + b"(" * 40 + b")" * 40 + b"\r\n", max_depth=8)
    assert evs == [Rejected(b"a", "lists nested too deeply")]


def test_line_too_long_is_dropped_with_bounded_memory() -> None:
    reader = CommandReader(max_line=100)
    reader.feed(b"a NOOP " + b"x" * 1000)
    assert reader.next_event() is None
    assert reader.buffered() <= 100 + 1
    reader.feed(b"y" * 1000 + b"\r\nb NOOP\r\n")
    assert reader.next_event() == Rejected(b"a", "line too long")
    assert reader.next_event() == Command([Atom(b"b"), Atom(b"NOOP")])


def test_rejection_is_tagged_only_with_the_whole_first_word() -> None:
    # "a\x01b" must not be answered as tag "a" (another command's tag),
    # nor an 8-bit word as a tag (RFC 3501 §9: tags are 7-bit).
    assert events(b"a\x01b NOOP\r\n")[0].tag is None
    assert events(b"\x80 NOOP\r\n")[0].tag is None
    reader = CommandReader(max_line=100)
    reader.feed(b"x" * 1000 + b"\r\n")
    assert reader.next_event() == Rejected(None, "line too long")


def test_sync_literal_over_limit_is_refused_without_reading_it() -> None:
    evs = events(b"a APPEND INBOX {1000}\r\nb NOOP\r\n", literal_limit=lambda items: 100)
    assert evs == [Rejected(b"a", "literal too large", too_big=True), Command([Atom(b"b"), Atom(b"NOOP")])]


def test_non_sync_literal_over_limit_is_fatal() -> None:
    # RFC 7888 §4: the bytes of a {n+} over the limit are already coming (and
    # may never end): the reader refuses it and frames nothing after it, so
    # no literal byte is ever run as a command.
    data = b"a APPEND INBOX {200+}\r\n" + b"z" * 200 + b"\r\nb NOOP\r\n"
    evs = events(data, literal_limit=lambda items: 100)
    assert evs == [Rejected(b"a", "literal too large", too_big=True, fatal=True)]


def test_non_sync_literal_over_limit_after_a_syntax_error_is_fatal() -> None:
    data = b'a LOGIN "x\\y" {99999999999+}\r\nb NOOP\r\n'
    evs = events(data, literal_limit=lambda items: 100)
    assert evs == [Rejected(b"a", "bad escape in quoted string", fatal=True)]


def test_non_sync_literal_within_limit_after_a_syntax_error_is_dropped() -> None:
    data = b'a LOGIN "x\\y" {5+}\r\nzzzzz\r\nb NOOP\r\n'
    evs = events(data, literal_limit=lambda items: 100)
    assert evs == [Rejected(b"a", "bad escape in quoted string"), Command([Atom(b"b"), Atom(b"NOOP")])]


def test_literal_in_progress_leaves_the_input_buffer() -> None:
    # Issue 15: the server pauses reading when buffered() passes its bound;
    # a literal being assembled must not count, or a literal larger than that
    # bound would wait forever for bytes the paused socket never delivers.
    reader = CommandReader(literal_limit=lambda items: 1 << 20, spool_threshold=1 << 20)
    reader.feed(b"a APPEND INBOX {500000}\r\n")
    assert reader.next_event() == ContinueLiteral(500000)
    for _ in range(499):
        reader.feed(b"x" * 1000)
        assert reader.next_event() is None
        assert reader.buffered() == 0
    reader.feed(b"x" * 1000 + b"\r\n")
    event = reader.next_event()
    assert isinstance(event, Command) and event.items[3] == LiteralString(b"x" * 500000)


class _ListSpool:
    def __init__(self, spools: list[Any], size: int):
        self.data = bytearray()
        self.size = size
        spools.append(self)

    def write(self, data: bytes) -> None:
        self.data += data

    def finish(self) -> SpooledLiteral:
        return SpooledLiteral(f"spool{self.size}", len(self.data))

    def release(self) -> None:
        pass


def test_literals_past_the_memory_budget_are_spooled() -> None:
    # Many small literals in one command: once their total passes
    # max_memory_literals the rest go to the spool, whatever their size.
    spools: list[Any] = []
    reader = CommandReader(literal_limit=lambda items: 1 << 20, spool=lambda n: _ListSpool(spools, n),
                           spool_threshold=100, max_memory_literals=150)
    reader.feed(b"a X {80+}\r\n" + b"1" * 80 + b" {80+}\r\n" + b"2" * 80
                + b" {20+}\r\n" + b"3" * 20 + b"\r\n")
    event = reader.next_event()
    assert isinstance(event, Command)
    assert event.items[2:] == [LiteralString(b"1" * 80), SpooledLiteral("spool80", 80),
                               LiteralString(b"3" * 20)]
    assert [bytes(s.data) for s in spools] == [b"2" * 80]


def test_literal_limit_sees_the_command() -> None:
    seen = []

    def limit(items: list[Any]) -> int:
        seen.append(list(items))
        return 10

    events(b"t1 APPEND INBOX {3+}\r\nabc\r\n", literal_limit=limit)
    assert seen[0][:2] == [Atom(b"t1"), Atom(b"APPEND")]


def test_literal_marker_must_end_the_line() -> None:
    assert events(b"a LOGIN {5} x\r\n") == [Rejected(b"a", "literal marker must end the line")]


def test_raw_line_mode_for_idle_done() -> None:
    evs = events(b"a IDLE\r\nDONE\r\nb NOOP\r\n", raw_after=1)
    assert evs == [Command([Atom(b"a"), Atom(b"IDLE")]), RawLine(b"DONE"),
                   Command([Atom(b"b"), Atom(b"NOOP")])]


def test_raw_line_keeps_literal_markers_verbatim() -> None:
    evs = events(b"a AUTHENTICATE PLAIN\r\nAGFsaWNl{5}\r\n", raw_after=1)
    assert evs[1] == RawLine(b"AGFsaWNl{5}")


def test_discard_buffered_drops_pipelined_plaintext() -> None:
    reader = CommandReader()
    reader.feed(b"a STARTTLS\r\nb LOGIN evil pw\r\n")
    assert reader.next_event() == Command([Atom(b"a"), Atom(b"STARTTLS")])
    reader.discard_buffered()
    assert reader.next_event() is None


def test_empty_line_and_control_characters() -> None:
    assert events(b"\r\n") == [Rejected(None, "empty command line")]
    assert events(b"a NO\x01OP\r\n") == [Rejected(b"a", "control character in command")]


def test_eight_bit_atoms_survive() -> None:
    [cmd] = events("a SELECT 收件箱\r\n".encode())
    assert cmd.items[2] == Atom("收件箱".encode())


# --- properties ---------------------------------------------------------------------------

atoms = st.from_regex(rb"[A-Za-z0-9.\\*%\[\]<>:,+-]{1,12}", fullmatch=True)
strings = st.binary(max_size=40)
values = st.recursive(
    st.one_of(atoms.map(Atom), strings),
    lambda children: st.lists(children, max_size=4),
    max_leaves=12,
)


def _wire(value: Any) -> bytes:
    if isinstance(value, Atom):
        return bytes(value)
    if isinstance(value, list):
        return b"(" + b" ".join(_wire(v) for v in value) + b")"
    return render(value)


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return bytes(value)


@settings(max_examples=200, deadline=None)
@given(st.lists(values, min_size=1, max_size=6))
def test_round_trip_of_rendered_values(items: list[Any]) -> None:
    line = b"t1 CMD " + b" ".join(_wire(v) for v in items) + b"\r\n"
    evs = [e for e in events(line, literal_limit=lambda _: 10**6) if not isinstance(e, ContinueLiteral)]
    assert len(evs) == 1 and isinstance(evs[0], Command)
    assert _plain(evs[0].items[2:]) == _plain(items)


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_random_input_gives_only_events(data: bytes) -> None:
    # The one rule: any input frames into events (or waits for more), nothing raises.
    for event in events(data, max_line=120, literal_limit=lambda _: 50):
        assert isinstance(event, (Command, ContinueLiteral, Rejected, RawLine))


@pytest.mark.parametrize("size", [0, 1, 65535])
def test_literal_sizes(size: int) -> None:
    payload = b"x" * size
    evs = events(b"a APPEND INBOX {%d+}\r\n" % size + payload + b"\r\n", literal_limit=lambda _: 10**6)
    assert evs[-1].items[-1] == payload


class MemorySpool:
    """A spool that records what the tokenizer did with it."""

    def __init__(self, log: list[Any]):
        self.data = bytearray()
        self.log = log
        log.append(self)
        self.released = False

    def write(self, data: bytes) -> None:
        self.data += data

    def finish(self) -> SpooledLiteral:
        return SpooledLiteral(f"mem:{id(self)}", len(self.data))

    def release(self) -> None:
        self.released = True


def test_large_literals_stream_into_a_spool() -> None:
    for step in (1, 7, 10**6):
        log: list[Any] = []
        reader = CommandReader(literal_limit=lambda _: 10**6, spool=lambda n, log=log: MemorySpool(log),
                               spool_threshold=10)
        data = b"a APPEND INBOX {300+}\r\n" + b"m" * 300 + b"\r\n"
        evs = []
        for i in range(0, len(data), step):
            reader.feed(data[i : i + step])
            assert reader.buffered() <= max(step, 40)  # never the whole literal
            while (e := reader.next_event()) is not None:
                evs.append(e)
        [spool] = log
        assert spool.data == b"m" * 300 and not spool.released
        literal = SpooledLiteral(f"mem:{id(spool)}", 300)
        assert evs == [Command([Atom(b"a"), Atom(b"APPEND"), Atom(b"INBOX"), literal])]


def test_spool_of_a_refused_command_is_released() -> None:
    log: list[Any] = []
    reader = CommandReader(literal_limit=lambda _: 10**6, spool=lambda n: MemorySpool(log), spool_threshold=4)
    reader.feed(b"a APPEND INBOX {8+}\r\n12345678 )\r\n")
    assert reader.next_event() == Rejected(b"a", "unbalanced parentheses")
    assert log[0].released
    reader.feed(b"b APPEND INBOX {8+}\r\n1234")
    assert reader.next_event() is None
    reader.discard_buffered()
    assert log[1].released
