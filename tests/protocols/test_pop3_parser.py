# -*- test-case-name: tests.protocols.test_pop3_parser -*-
"""The sans-IO POP3 command parser, fed whole and byte by byte."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xmail.protocols.pop3.parser import (
    MAX_COMMAND_LINE,
    NEED_DATA,
    BadLine,
    Command,
    CommandParser,
    SaslResponse,
)


def events(data: bytes, *, bytewise: bool, parser: CommandParser | None = None) -> list:
    parser = parser or CommandParser()
    out = []
    pieces = [data[i:i + 1] for i in range(len(data))] if bytewise else [data]
    for piece in pieces:
        parser.receive_data(piece)
        while (event := parser.next_event()) is not NEED_DATA:
            out.append(event)
    return out


def both(data: bytes) -> list:
    whole = events(data, bytewise=False)
    assert events(data, bytewise=True) == whole
    return whole


def test_commands_keyword_case_and_arguments():
    assert both(b"user alice@example.com\r\nList 3\r\nTOP 1 10\r\nQUIT\r\n") == [
        Command("USER", ("alice@example.com",)),
        Command("LIST", ("3",)),
        Command("TOP", ("1", "10")),
        Command("QUIT"),
    ]


def test_bare_lf_ends_a_line_too():
    assert both(b"STAT\nNOOP\r\n") == [Command("STAT"), Command("NOOP")]


def test_incomplete_line_waits():
    parser = CommandParser()
    parser.receive_data(b"RETR 1")
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"\r\n")
    assert parser.next_event() == Command("RETR", ("1",))


def test_pass_keeps_spaces_in_the_password():
    assert both(b"PASS  my secret pass \r\n") == [Command("PASS", (" my secret pass ",))]
    assert both(b"PASS\r\n") == [Command("PASS")]


def test_empty_line_and_junk_are_bad_lines_not_exceptions():
    assert both(b"\r\n") == [BadLine("empty command")]
    assert both(b"12AB\r\n") == [BadLine("unknown command")]
    assert both(b"NO\0OP\r\n") == [BadLine("NUL in command line")]
    assert both(b"USER \xff\xfe\r\n") == [BadLine("command line is not ASCII or UTF-8")]
    assert both(b"LIST 1 2 3 4 5\r\n") == [BadLine("too many arguments")]


def test_utf8_user_name_is_accepted():
    assert both("USER jörg@example.com\r\n".encode()) == [Command("USER", ("jörg@example.com",))]


def test_over_long_line_reported_once_then_next_command_works():
    long_line = b"USER " + b"x" * (MAX_COMMAND_LINE * 3) + b"\r\n"
    assert both(long_line + b"NOOP\r\n") == [BadLine("line too long"), Command("NOOP")]


def test_line_of_exactly_the_limit_is_accepted():
    line = b"USER " + b"a" * (MAX_COMMAND_LINE - len(b"USER \r\n")) + b"\r\n"
    assert len(line) == MAX_COMMAND_LINE
    assert both(line) == [Command("USER", ("a" * (MAX_COMMAND_LINE - 7),))]
    assert both(b"USER a" + line[6:-2] + b"a\r\n") == [BadLine("line too long")]


def test_buffer_stays_bounded_while_skipping_a_long_line():
    parser = CommandParser()
    for _ in range(1000):
        parser.receive_data(b"y" * 1000)
        while parser.next_event() is not NEED_DATA:
            pass
        assert parser.buffered <= MAX_COMMAND_LINE


def test_sasl_response_mode_takes_the_raw_next_line_only():
    parser = CommandParser()
    parser.receive_data(b"AUTH PLAIN\r\n")
    assert parser.next_event() == Command("AUTH", ("PLAIN",))
    parser.expect_sasl_response()
    found = events(b"AGFsaWNlAHNlY3JldA==\r\nNOOP\r\n", bytewise=True, parser=parser)
    assert found == [SaslResponse(b"AGFsaWNlAHNlY3JldA=="), Command("NOOP")]


def test_sasl_line_may_exceed_the_command_limit():
    parser = CommandParser()
    parser.expect_sasl_response()
    data = b"A" * (MAX_COMMAND_LINE * 4)
    assert events(data + b"\r\n", bytewise=False, parser=parser) == [SaslResponse(data)]


def test_discard_buffer_drops_pipelined_plaintext():
    parser = CommandParser()
    parser.receive_data(b"STLS\r\nUSER mallory\r\nPASS x\r\n")
    assert parser.next_event() == Command("STLS")
    parser.discard_buffer()
    assert parser.next_event() is NEED_DATA
    parser.receive_data(b"CAPA\r\n")
    assert parser.next_event() == Command("CAPA")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=3000), st.lists(st.integers(min_value=1, max_value=64), max_size=20),
       st.booleans())
def test_random_input_gives_events_never_exceptions(data, splits, sasl):
    parser = CommandParser(max_line=64, max_sasl_line=128)
    if sasl:
        parser.expect_sasl_response()
    pos = 0
    out = []
    for size in splits + [len(data)]:
        parser.receive_data(data[pos:pos + size])
        pos += size
        while (event := parser.next_event()) is not NEED_DATA:
            assert isinstance(event, Command | BadLine | SaslResponse)
            out.append(event)
        assert parser.buffered <= 128
    # Splitting never changes the outcome.
    reference = CommandParser(max_line=64, max_sasl_line=128)
    if sasl:
        reference.expect_sasl_response()
    assert events(data, bytewise=False, parser=reference) == out
