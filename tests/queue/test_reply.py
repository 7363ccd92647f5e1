# -*- test-case-name: tests.queue.test_reply -*-
"""The sans-IO reply parser and dot-stuffer, whole and byte by byte."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmail.message.dotstuff import DotStuffer
from xmail.queue.reply import (
    MAX_REPLY_LINE,
    Reply,
    ReplyParser,
    ReplyProtocolError,
    ehlo_extensions,
)


def parse_whole(data: bytes) -> list[Reply]:
    return ReplyParser().feed(data)


def parse_bytewise(data: bytes) -> list[Reply]:
    parser = ReplyParser()
    out: list[Reply] = []
    for i in range(len(data)):
        out.extend(parser.feed(data[i : i + 1]))
    return out


both = pytest.mark.parametrize("parse", [parse_whole, parse_bytewise], ids=["whole", "bytewise"])


@both
def test_single_line(parse):
    (reply,) = parse(b"250 2.1.0 Sender ok\r\n")
    assert reply.code == 250
    assert reply.lines == ("2.1.0 Sender ok",)
    assert reply.enhanced == "2.1.0"
    assert reply.text == "Sender ok"
    assert reply.positive and not reply.transient and not reply.permanent


@both
def test_multiline_ehlo(parse):
    data = (b"250-mx.other.test Hello\r\n250-PIPELINING\r\n250-SIZE 1000\r\n"
            b"250-8BITMIME\r\n250-starttls\r\n250 DSN\r\n")
    (reply,) = parse(data)
    assert reply.code == 250
    assert len(reply.lines) == 6
    ext = ehlo_extensions(reply)
    assert ext == {"PIPELINING": "", "SIZE": "1000", "8BITMIME": "", "STARTTLS": "", "DSN": ""}


@both
def test_several_replies_in_one_feed_and_pipelined_order(parse):
    replies = parse(b"250 ok\r\n550 5.1.1 no such user\r\n451 4.7.1 greylisted\r\n354 go\r\n")
    assert [r.code for r in replies] == [250, 550, 451, 354]
    assert replies[1].permanent and replies[1].status() == "5.1.1"
    assert replies[2].transient and replies[2].status() == "4.7.1"


@both
def test_code_only_and_bare_lf(parse):
    replies = parse(b"250\r\n221 bye\n")
    assert [(r.code, r.lines) for r in replies] == [(250, ("",)), (221, ("bye",))]


@both
def test_status_without_enhanced_code_is_derived_from_class(parse):
    (reply,) = parse(b"554 Transaction failed\r\n")
    assert reply.enhanced is None
    assert reply.status() == "5.0.0"
    assert str(reply) == "554 Transaction failed"


@pytest.mark.parametrize(
    "data",
    [
        b"hello\r\n",
        b"25 x\r\n",
        b"250x\r\n",
        b"650 what\r\n",
        b"250-first\r\n251 second\r\n",  # the code changes inside a reply
        b"2" * (MAX_REPLY_LINE + 10),  # no line end, too long
        b"250 " + b"x" * MAX_REPLY_LINE + b"\r\n",
    ],
)
def test_garbage_is_a_protocol_error(data):
    with pytest.raises(ReplyProtocolError):
        parse_whole(data)
    with pytest.raises(ReplyProtocolError):
        parse_bytewise(data)


def test_too_many_lines():
    parser = ReplyParser(max_lines=3)
    with pytest.raises(ReplyProtocolError):
        parser.feed(b"250-a\r\n250-b\r\n250-c\r\n250 d\r\n")


def test_pending_reports_leftover_bytes():
    parser = ReplyParser()
    parser.feed(b"220 go ahead\r\n")
    assert not parser.pending
    parser.feed(b"250-inj")
    assert parser.pending
    parser2 = ReplyParser()
    parser2.feed(b"250-first line\r\n")
    assert parser2.pending  # unfinished multi-line reply


@given(st.binary(max_size=300))
def test_random_input_parses_or_raises_protocol_error(data):
    try:
        whole = parse_whole(data)
    except ReplyProtocolError:
        whole = None
    try:
        bytewise = parse_bytewise(data)
    except ReplyProtocolError:
        bytewise = None
    if whole is not None and bytewise is not None:
        assert whole == bytewise


# --- dot-stuffing ----------------------------------------------------------


def unstuff(stream: bytes) -> bytes:
    """What a receiving server does (RFC 5321 §4.5.2)."""
    assert stream.endswith(b"\r\n.\r\n") or stream == b".\r\n"
    body = stream[: -len(b".\r\n")]
    lines = body.split(b"\r\n")
    return b"\r\n".join(line[1:] if line.startswith(b".") else line for line in lines)


def stuff(data: bytes, chunk: int) -> bytes:
    stuffer = DotStuffer()
    out = b"".join(stuffer.feed(data[i : i + chunk]) for i in range(0, len(data), chunk))
    return out + stuffer.finish()


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 1 << 16])
def test_dot_stuffing_examples(chunk):
    assert stuff(b"", chunk) == b".\r\n"
    assert stuff(b"a\r\n", chunk) == b"a\r\n.\r\n"
    assert stuff(b"a", chunk) == b"a\r\n.\r\n"
    assert stuff(b".\r\n", chunk) == b"..\r\n.\r\n"
    assert stuff(b"x\r\n.\r\ny\r\n..z\r\n", chunk) == b"x\r\n..\r\ny\r\n...z\r\n.\r\n"
    # A bare LF before the end never makes "\n.\r\n" (SMTP smuggling).
    assert stuff(b"x\n", chunk).endswith(b"x\n\r\n.\r\n")


@given(st.lists(st.sampled_from([b"", b".", b"..", b"a", b".a", b"hello. world"]), max_size=20),
       st.integers(min_value=1, max_value=9))
def test_dot_stuffing_round_trips(lines, chunk):
    data = b"".join(line + b"\r\n" for line in lines)
    stream = stuff(data, chunk)
    assert stream == stuff(data, 1 << 16)
    assert unstuff(stream) == data
    # the only "CRLF . CRLF" is the terminator
    assert (b"\r\n" + stream).count(b"\r\n.\r\n") == 1
