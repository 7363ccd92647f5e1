# -*- test-case-name: tests.protocols.managesieve.test_parser -*-
"""The sans-IO ManageSieve framing (RFC 5804 §4), fed whole and byte by
byte: literals split anywhere, every bound, hostile input."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from xmail.protocols.managesieve import response
from xmail.protocols.managesieve.parser import (
    MAX_COMMAND_LINE,
    MAX_QUOTED,
    NEED_DATA,
    Atom,
    Command,
    CommandParser,
    Number,
    Rejected,
    SaslResponse,
    String,
)


def events(data: bytes, *, chunk: int | None = None, **kw: Any) -> list[Any]:
    """Every event `data` yields, fed whole (chunk None) or `chunk` bytes at a time."""
    parser = CommandParser(**kw)
    out: list[Any] = []
    pieces = [data] if chunk is None else [data[i:i + chunk] for i in range(0, len(data), chunk)]
    for piece in pieces:
        parser.receive_data(piece)
        while (event := parser.next_event()) is not NEED_DATA:
            out.append(event)
    return out


def both(data: bytes, **kw: Any) -> list[Any]:
    """The events, which must be the same whole and byte by byte."""
    whole = events(data, **kw)
    assert events(data, chunk=1, **kw) == whole
    assert events(data, chunk=7, **kw) == whole
    return whole


def test_commands_quoted_strings_numbers():
    assert both(b'CAPABILITY\r\nhavespace "my script" 1234\r\nNOOP "a \\"b\\" \\\\"\r\n') == [
        Command("CAPABILITY"),
        Command("HAVESPACE", (String(b"my script"), Number(1234))),
        Command("NOOP", (String(b'a "b" \\'),)),
    ]


def test_a_bare_lf_ends_a_line_too():
    assert both(b"LOGOUT\n") == [Command("LOGOUT")]


def test_non_synchronising_and_synchronising_literals():
    script = b'require "fileinto";\r\nfileinto "x";\r\n'
    data = b'PUTSCRIPT "s" {%d+}\r\n' % len(script) + script + b"\r\nPUTSCRIPT {1}\r\nx {0+}\r\n\r\n"
    assert both(data, literal_limit=1000) == [
        Command("PUTSCRIPT", (String(b"s"), String(script, literal=True))),
        Command("PUTSCRIPT", (String(b"x", literal=True), String(b"", literal=True))),
    ]


def test_a_literal_may_hold_crlf_and_anything():
    body = b"\r\n{5+}\r\nLOGOUT\r\n\x00\xff"
    got = both(b"CHECKSCRIPT {%d+}\r\n" % len(body) + body + b"\r\nNOOP\r\n", literal_limit=100)
    assert got == [Command("CHECKSCRIPT", (String(body, literal=True),)), Command("NOOP")]


def test_utf8_in_quoted_strings_is_kept_as_octets():
    assert both('GETSCRIPT "规则"\r\n'.encode()) == [Command("GETSCRIPT", (String("规则".encode()),))]


@pytest.mark.parametrize("line, reason", [
    (b"\r\n", "expected a command name"),
    (b"123\r\n", "expected a command name"),
    (b'NOOP "unterminated\r\n', "unterminated quoted string"),
    (b'NOOP "bad \\x escape"\r\n', "invalid escape in quoted string"),
    (b'NOOP  "two spaces"\r\n', "invalid character in command"),
    (b'NOOP "a""b"\r\n', "expected a space between arguments"),
    (b"NOOP \r\n", "trailing space"),
    (b"HAVESPACE \"x\" 99999999999\r\n", "number too large"),
    (b"HAVESPACE \"x\" 4294967296\r\n", "number too large"),
    (b'NOOP "1" "2" "3" "4" "5"\r\n', "too many arguments"),
    (b"PUTSCRIPT{1+}\r\nx\r\n", "expected a space before a literal"),
    (b'NOOP "nul\x00"\r\n', "invalid character in quoted string"),
    (b"THISCOMMANDNAMEISMUCHTOOLONG\r\n", "expected a command name"),
])
def test_syntax_errors_are_rejected_and_the_next_command_is_read(line: bytes, reason: str):
    got = both(line + b"NOOP\r\n")
    assert got == [Rejected(reason), Command("NOOP")]


def test_numbers_up_to_32_bits():
    assert both(b'HAVESPACE "x" 4294967295\r\n') == [Command("HAVESPACE", (String(b"x"), Number(4294967295)))]


def test_quoted_strings_are_at_most_1024_octets():
    fits = b"x" * MAX_QUOTED
    assert both(b'NOOP "' + fits + b'"\r\n') == [Command("NOOP", (String(fits),))]
    got = both(b'NOOP "' + fits + b'x"\r\nNOOP\r\n')
    assert isinstance(got[0], Rejected) and "use a literal" in got[0].reason
    assert got[1] == Command("NOOP")


def test_an_over_long_line_is_skipped_without_being_held_and_rejected_once():
    parser = CommandParser()
    parser.receive_data(b"NOOP " + b"x" * (MAX_COMMAND_LINE + 10))
    assert parser.next_event() is NEED_DATA
    assert parser.buffered == 0 and not parser.idle
    for _ in range(100):
        parser.receive_data(b"y" * 4096)  # the line goes on: nothing kept
        assert parser.next_event() is NEED_DATA
        assert parser.buffered == 0
    # Answered when the command ends: responses stay in command order.
    parser.receive_data(b"\r\nLOGOUT\r\n")
    assert parser.next_event() == Rejected("command line too long")
    assert parser.next_event() == Command("LOGOUT")


def test_line_segments_around_literals_count_together():
    # 20 literals of one octet separated by lines: the segments add up.
    piece = b' "' + b"a" * 400 + b'" {1+}\r\nx'
    got = both(b"NOOP" + piece * 21 + b"\r\nNOOP\r\n", max_args=100, max_line=4096)
    assert isinstance(got[0], Rejected)
    assert got[-1] == Command("NOOP")


def test_a_literal_over_the_limit_is_consumed_without_being_kept():
    parser = CommandParser(literal_limit=100, discard_limit=10_000)
    parser.receive_data(b'PUTSCRIPT "big" {5000+}\r\n')
    assert parser.next_event() is NEED_DATA
    for _ in range(5):
        parser.receive_data(b"LOGOUT\r\n" * 125)  # 1000 octets of the literal
        assert parser.next_event() is NEED_DATA
        assert parser.buffered == 0
    parser.receive_data(b"\r\nNOOP\r\n")
    event = parser.next_event()
    assert isinstance(event, Rejected) and event.too_big and not event.fatal
    assert parser.next_event() == Command("NOOP")


def test_a_literal_over_the_discard_limit_is_fatal_at_once():
    parser = CommandParser(literal_limit=100, discard_limit=10_000)
    parser.receive_data(b'PUTSCRIPT "big" {99999999999+}\r\nsome')
    event = parser.next_event()
    assert isinstance(event, Rejected) and event.fatal and event.too_big
    parser.receive_data(b"LOGOUT\r\n")
    assert parser.next_event() is NEED_DATA and parser.buffered == 0


def test_literals_of_a_refused_command_are_skipped_too():
    # A syntax error before the literal: its octets still are not commands.
    got = both(b'NOOP "bad\\q" {8+}\r\nLOGOUT\r\n\r\nNOOP\r\n')
    assert got == [Rejected("invalid escape in quoted string"), Command("NOOP")]


def test_sasl_responses():
    parser = CommandParser()
    parser.receive_data(b'AUTHENTICATE "PLAIN"\r\n')
    assert parser.next_event() == Command("AUTHENTICATE", (String(b"PLAIN"),))
    parser.expect_sasl_response()
    parser.receive_data(b'{8+}\r\nAGEAYgBj\r\nNOOP\r\n')
    assert parser.next_event() == SaslResponse(b"AGEAYgBj")
    assert parser.next_event() == Command("NOOP")
    for line, expected in ((b'"abc"\r\n', SaslResponse(b"abc")), (b'"*"\r\n', SaslResponse(b"*")),
                           (b"*\r\n", SaslResponse(b"*")),
                           (b'"a" "b"\r\n', Rejected("expected a SASL response string"))):
        parser.expect_sasl_response()
        parser.receive_data(line)
        assert parser.next_event() == expected


def test_discard_buffer_forgets_pipelined_plaintext():
    parser = CommandParser()
    parser.receive_data(b'STARTTLS\r\nPUTSCRIPT "x" {3+}\r\nabc')
    assert parser.next_event() == Command("STARTTLS")
    parser.discard_buffer()
    assert parser.buffered == 0 and parser.idle
    parser.receive_data(b"CAPABILITY\r\n")
    assert parser.next_event() == Command("CAPABILITY")


def test_idle_between_commands_only():
    parser = CommandParser()
    assert parser.idle
    parser.receive_data(b"NO")
    assert parser.next_event() is NEED_DATA and not parser.idle
    parser.receive_data(b'OP {2+}\r\n')
    assert parser.next_event() is NEED_DATA and not parser.idle  # in the literal
    parser.receive_data(b"ab\r\n")
    assert isinstance(parser.next_event(), Command) and parser.idle


def test_atoms_are_tokens_the_session_judges():
    assert both(b"AUTHENTICATE PLAIN\r\n") == [Command("AUTHENTICATE", (Atom(b"PLAIN"),))]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300), st.integers(min_value=1, max_value=20))
def test_random_input_parses_or_is_rejected_nothing_else(data: bytes, chunk: int):
    parser = CommandParser(literal_limit=64, discard_limit=256, max_line=128)
    for i in range(0, len(data), chunk):
        parser.receive_data(data[i:i + chunk])
        while (event := parser.next_event()) is not NEED_DATA:
            assert isinstance(event, (Command, Rejected, SaslResponse))
        assert parser.buffered <= 128 + chunk


# -- the writer ------------------------------------------------------------------------------
def test_strings_are_quoted_or_literal():
    assert response.string("abc") == b'"abc"'
    assert response.string('a"b\\') == b'"a\\"b\\\\"'
    assert response.string("line 1\nline 2") == b"{13}\r\nline 1\nline 2"
    assert response.string("x" * 1025) == b"{1025}\r\n" + b"x" * 1025
    assert (response.no("line 3: unknown command", "QUOTA/MAXSIZE")
            == b'NO (QUOTA/MAXSIZE) "line 3: unknown command"\r\n')
    assert response.ok() == b"OK\r\n"


def test_what_the_server_writes_parses_back():
    # A string the writer makes is one argument to the reader.
    for text in ("plain", 'q"uo\\te', "multi\r\nline", "规则", "x" * 2000):
        parser = CommandParser(literal_limit=4096)
        parser.receive_data(b"NOOP " + response.string(text) + b"\r\n")
        assert parser.next_event() == Command("NOOP", (String(text.encode(), literal=len(text.encode()) > 1024
                                                              or "\n" in text),))
