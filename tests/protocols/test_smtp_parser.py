# -*- test-case-name: tests.protocols.test_smtp_parser -*-
"""SMTP framing and argument grammar, fed whole and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmail.protocols.smtp.grammar import (
    GrammarError,
    decode_xtext,
    encode_xtext,
    parse_params,
    parse_path_argument,
    split_command,
)
from xmail.protocols.smtp.parser import (
    BDAT,
    COMMAND,
    COMMAND_LINE_BOUND,
    DATA,
    NEED_DATA,
    BodyData,
    ChunkEnd,
    CommandLine,
    DataEnd,
    LineTooLong,
    SMTPParser,
)


def run(parser: SMTPParser, data: bytes, *, bytewise: bool, on_event=None) -> list:
    """Feed data (whole or one byte at a time) and collect events; BodyData
    pieces are merged so whole and byte-wise runs compare equal.  on_event
    lets a test switch modes as the session would."""
    events: list = []

    def drain() -> None:
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                return
            if isinstance(event, BodyData) and events and isinstance(events[-1], BodyData):
                events[-1] = BodyData(events[-1].data + event.data)
            else:
                events.append(event)
            if on_event is not None:
                on_event(parser, event)

    pieces = [data[i : i + 1] for i in range(len(data))] if bytewise else [data]
    for piece in pieces:
        parser.receive_data(piece)
        drain()
    return events


def session_like(parser: SMTPParser, event) -> None:
    """Switch to DATA after a DATA command and to BDAT after BDAT n."""
    if isinstance(event, CommandLine):
        words = event.line.split()
        if words[:1] == [b"DATA"]:
            parser.start_data()
        elif words[:1] == [b"BDAT"]:
            parser.start_chunk(int(words[1]))


both = pytest.mark.parametrize("bytewise", [False, True], ids=["whole", "bytewise"])


@both
def test_command_lines(bytewise: bool) -> None:
    events = run(SMTPParser(), b"EHLO a\r\nNOOP\nMAIL FROM:<x@y>\r\n", bytewise=bytewise)
    assert events == [CommandLine(b"EHLO a"), CommandLine(b"NOOP"), CommandLine(b"MAIL FROM:<x@y>")]


@both
def test_incomplete_line_waits(bytewise: bool) -> None:
    parser = SMTPParser()
    assert run(parser, b"NOOP", bytewise=bytewise) == []
    assert run(parser, b"\r\n", bytewise=bytewise) == [CommandLine(b"NOOP")]


@both
def test_over_long_command_is_discarded_then_reported_in_order(bytewise: bool) -> None:
    parser = SMTPParser(command_line_bound=64)
    data = b"NOOP\r\n" + b"X" * 500 + b"\r\nQUIT\r\n"
    events = run(parser, data, bytewise=bytewise)
    assert events == [CommandLine(b"NOOP"), LineTooLong(), CommandLine(b"QUIT")]
    assert parser.buffered == 0


def test_command_buffer_is_bounded() -> None:
    parser = SMTPParser()
    for _ in range(100):
        parser.receive_data(b"A" * 4096)
        assert parser.next_event() is NEED_DATA
        assert parser.buffered <= COMMAND_LINE_BOUND + 4096


@both
def test_data_dot_unstuffing_and_end(bytewise: bool) -> None:
    wire = b"DATA\r\nSubject: x\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n"
    events = run(SMTPParser(), wire, bytewise=bytewise, on_event=session_like)
    assert events == [
        CommandLine(b"DATA"),
        BodyData(b"Subject: x\r\n\r\n.leading dot\r\n"),
        DataEnd(False),
        CommandLine(b"QUIT"),
    ]


@both
def test_empty_message(bytewise: bool) -> None:
    events = run(SMTPParser(), b"DATA\r\n.\r\nNOOP\r\n", bytewise=bytewise, on_event=session_like)
    assert events == [CommandLine(b"DATA"), DataEnd(False), CommandLine(b"NOOP")]


@both
@pytest.mark.parametrize(
    "fake_end",
    [b"\n.\n", b"\r\n.\n", b"\n.\r\n", b"\r.\r", b"\r\n.\r", b"\r.\r\n"],
    ids=["lf.lf", "crlf.lf", "lf.crlf", "cr.cr", "crlf.cr", "cr.crlf"],
)
def test_smuggling_variants_are_content(bytewise: bool, fake_end: bytes) -> None:
    wire = b"DATA\r\nhello" + fake_end + b"MAIL FROM:<evil@x>\r\nmore\r\n.\r\n"
    events = run(SMTPParser(), wire, bytewise=bytewise, on_event=session_like)
    assert [type(e) for e in events] == [CommandLine, BodyData, DataEnd]
    assert b"MAIL FROM:<evil@x>" in events[1].data
    if not fake_end.startswith(b"\r\n"):
        # A lone dot after a bare line end is content, not a stuffed dot.
        assert b"." in events[1].data.split(b"hello", 1)[1].split(b"MAIL")[0]


@both
def test_long_text_line_is_streamed_and_flagged(bytewise: bool) -> None:
    long_line = b"x" * 5000
    wire = b"DATA\r\n" + long_line + b"\r\nshort\r\n.\r\n"
    parser = SMTPParser()
    events = run(parser, wire, bytewise=bytewise, on_event=session_like)
    assert events[-1] == DataEnd(True)
    assert events[1] == BodyData(long_line + b"\r\nshort\r\n")


def test_data_buffer_is_bounded() -> None:
    parser = SMTPParser()
    parser.start_data()
    for _ in range(50):
        parser.receive_data(b"y" * 3000)
        while parser.next_event() is not NEED_DATA:
            pass
        assert parser.buffered < 1000


def test_line_of_exactly_998_octets_is_fine() -> None:
    parser = SMTPParser()
    parser.start_data()
    events = run(parser, b"a" * 998 + b"\r\n.\r\n", bytewise=False)
    assert events[-1] == DataEnd(False)


@both
def test_bdat_chunks_raw(bytewise: bool) -> None:
    body = b"line1\r\n.\r\nline2\n"
    wire = b"BDAT %d\r\n" % len(body) + body + b"BDAT 0 LAST\r\nQUIT\r\n"
    events = run(SMTPParser(), wire, bytewise=bytewise, on_event=session_like)
    assert events == [
        CommandLine(b"BDAT %d" % len(body)),
        BodyData(body),
        ChunkEnd(len(body)),
        CommandLine(b"BDAT 0 LAST"),
        ChunkEnd(0),
        CommandLine(b"QUIT"),
    ]


def test_discard_buffer_drops_injected_commands() -> None:
    parser = SMTPParser()
    parser.receive_data(b"STARTTLS\r\nMAIL FROM:<a@b>\r\n")
    assert parser.next_event() == CommandLine(b"STARTTLS")
    assert parser.discard_buffer() > 0
    assert parser.next_event() is NEED_DATA


def test_mode_names() -> None:
    parser = SMTPParser()
    assert parser.mode == COMMAND
    parser.start_data()
    assert parser.mode == DATA
    parser.start_chunk(3)
    assert parser.mode == BDAT


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(0, 3))
def test_random_input_never_raises(pieces: list[bytes], mode: int) -> None:
    parser = SMTPParser()
    if mode == 1:
        parser.start_data()
    elif mode == 2:
        parser.start_chunk(100)
    for piece in pieces:
        parser.receive_data(piece)
        while True:
            event = parser.next_event()
            if event is NEED_DATA:
                break
            if isinstance(event, CommandLine) and event.line.startswith(b"DATA"):
                parser.start_data()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=2000), st.integers(1, 50))
def test_data_content_same_whole_and_split(content: bytes, step: int) -> None:
    wire = content + b"\r\n.\r\n"
    whole = SMTPParser()
    whole.start_data()
    a = run(whole, wire, bytewise=False)
    split = SMTPParser()
    split.start_data()
    b: list = []
    for i in range(0, len(wire), step):
        b += run(split, wire[i : i + step], bytewise=False)
    merged: list = []
    for e in b:
        if isinstance(e, BodyData) and merged and isinstance(merged[-1], BodyData):
            merged[-1] = BodyData(merged[-1].data + e.data)
        else:
            merged.append(e)
    assert [e for e in a if not isinstance(e, DataEnd)] == [e for e in merged if not isinstance(e, DataEnd)]
    assert any(isinstance(e, DataEnd) for e in a) == any(isinstance(e, DataEnd) for e in merged)


# --- grammar -----------------------------------------------------------------


def test_split_command() -> None:
    c = split_command(b"mail FROM:<a@b> SIZE=10")
    assert (c.verb, c.argument) == ("MAIL", "FROM:<a@b> SIZE=10")


@pytest.mark.parametrize(
    "argument, address, params",
    [
        ("FROM:<alice@example.com>", "alice@example.com", {}),
        ("FROM: <alice@example.com>", "alice@example.com", {}),  # Outlook
        ("from:<>", "", {}),
        ("FROM:<a@b> SIZE=100 BODY=8BITMIME", "a@b", {"SIZE": "100", "BODY": "8BITMIME"}),
        ("FROM:<@relay.example,@r2.example:a@b>", "a@b", {}),  # source route ignored
        ('FROM:<"john doe"@example.com>', '"john doe"@example.com', {}),
        ("FROM:<用户@例子.广告> SMTPUTF8", "用户@例子.广告", {"SMTPUTF8": None}),
        ("FROM:<a@[192.0.2.1]>", "a@[192.0.2.1]", {}),
        ("FROM:a@b", "a@b", {}),
    ],
)
def test_mail_from_paths(argument: str, address: str, params: dict) -> None:
    path = parse_path_argument(argument, "FROM:", allow_null=True)
    assert path.address == address
    assert path.params == params


@pytest.mark.parametrize(
    "argument",
    ["FROM:<a@b", "FROM:<a b@c>", "FROM:<a@b>junk", "FROM:<@b>", "FROM:<a@>", "TO:<a@b>",
     "FROM:<a..b@c>", "FROM:<a@b> SIZE=1 SIZE=2", "FROM:<a@b> =x", "FROM:<" + "a" * 65 + "@b>"],
)
def test_bad_paths(argument: str) -> None:
    with pytest.raises(GrammarError):
        parse_path_argument(argument, "FROM:", allow_null=True)


def test_null_recipient_refused() -> None:
    with pytest.raises(GrammarError):
        parse_path_argument("TO:<>", "TO:", allow_null=False)


def test_params_and_xtext() -> None:
    assert parse_params(" NOTIFY=SUCCESS,FAILURE  ORCPT=rfc822;a+2Bb@c") == {
        "NOTIFY": "SUCCESS,FAILURE", "ORCPT": "rfc822;a+2Bb@c"}
    assert decode_xtext("a+2Bb+3Dc") == "a+b=c"
    assert encode_xtext("a+b=c d") == "a+2Bb+3Dc+20d"
    with pytest.raises(GrammarError):
        decode_xtext("a+zz")


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=200))
def test_random_paths_parse_or_grammar_error(text: str) -> None:
    try:
        parse_path_argument("FROM:" + text, "FROM:", allow_null=True)
    except GrammarError:
        pass
