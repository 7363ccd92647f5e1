# -*- test-case-name: tests.message.test_dotstuff -*-
"""The RETR/TOP encoder: whole, byte by byte, and split at every offset."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from xmail.message.dotstuff import MultilineEncoder, encode_message


def reference(message: bytes, body_lines: int | None = None) -> bytes:
    """The rule of RFC 1939 §3 line by line, slow and obvious."""
    text = message.replace(b"\r\n", b"\n")
    if text.endswith(b"\r"):
        text = text[:-1] + b"\n"
    lines = text.split(b"\n")
    if lines[-1] == b"":
        lines.pop()
    if body_lines is not None:
        header_end = lines.index(b"") if b"" in lines else len(lines)
        lines = lines[: header_end + 1 + body_lines]
    return b"".join((b"." + line if line.startswith(b".") else line) + b"\r\n" for line in lines) + b".\r\n"


def chunked(message: bytes, size: int, body_lines: int | None = None) -> bytes:
    encoder = MultilineEncoder(body_lines)
    out = b"".join(encoder.feed(message[i:i + size]) for i in range(0, len(message), size))
    return out + encoder.finish()


def check(message: bytes, body_lines: int | None = None) -> bytes:
    expected = reference(message, body_lines)
    assert encode_message(message, body_lines) == expected
    assert chunked(message, 1, body_lines) == expected
    for split in range(len(message) + 1):
        encoder = MultilineEncoder(body_lines)
        out = encoder.feed(message[:split]) + encoder.feed(message[split:]) + encoder.finish()
        assert out == expected, split
    return expected


def test_first_line_and_every_line_starting_with_a_dot_is_stuffed():
    assert check(b".hidden\r\nfoo\r\n.\r\n..two\r\n") == b"..hidden\r\nfoo\r\n..\r\n...two\r\n.\r\n"


def test_exactly_one_crlf_before_the_terminator():
    assert check(b"a\r\nb\r\n") == b"a\r\nb\r\n.\r\n"
    assert check(b"a\r\nb") == b"a\r\nb\r\n.\r\n"
    assert check(b"") == b".\r\n"
    assert check(b"\r\n") == b"\r\n.\r\n"


def test_bare_lf_becomes_crlf():
    assert check(b"Subject: x\n\nline\n.dot\nend") == b"Subject: x\r\n\r\nline\r\n..dot\r\nend\r\n.\r\n"


def test_bare_cr_inside_a_line_is_data_but_ends_the_message_as_a_line_end():
    assert check(b"a\rb\r\n") == b"a\rb\r\n.\r\n"
    assert check(b"a\r") == b"a\r\n.\r\n"
    assert check(b"a\r\r\n.x") == b"a\r\r\n..x\r\n.\r\n"


def test_a_message_ending_in_a_dot_line_cannot_end_early():
    # twisted.mail.pop3's bug: "\r\n.\r\n" inside the body must be stuffed.
    assert check(b"x\r\n.\r\ny\r\n") == b"x\r\n..\r\ny\r\n.\r\n"


def test_top_header_blank_line_and_n_body_lines():
    message = b"From: a\r\nSubject: s\r\n\r\n.one\r\ntwo\r\nthree\r\n"
    assert check(message, 0) == b"From: a\r\nSubject: s\r\n\r\n.\r\n"
    assert check(message, 2) == b"From: a\r\nSubject: s\r\n\r\n..one\r\ntwo\r\n.\r\n"
    assert check(message, 99) == reference(message)
    assert check(b"From: a\r\nSubject: no body", 5) == b"From: a\r\nSubject: no body\r\n.\r\n"
    assert check(b"\r\nbody only\r\nmore\r\n", 1) == b"\r\nbody only\r\n.\r\n"
    assert check(b"H: 1\n\nb1\nb2", 1) == b"H: 1\r\n\r\nb1\r\n.\r\n"


def test_top_reports_done_so_the_file_need_not_be_read_further():
    encoder = MultilineEncoder(1)
    encoder.feed(b"H: 1\r\n\r\nfirst\r\n")
    assert encoder.done
    assert encoder.feed(b"second\r\n") == b""
    assert encoder.finish() == b".\r\n"


def test_dots_at_16k_and_64k_chunk_boundaries():
    for size in (16384, 65536):
        message = b"Subject: dots\r\n\r\n"
        # Dots right at, before and after every chunk boundary of `size`.
        for boundary in (size, 2 * size, 3 * size):
            for offset in (-2, -1, 0, 1, 2):
                pad = boundary + offset - len(message) - 2
                message += b"y" * max(pad, 0) + b"\r\n.dot\r\n"
        expected = reference(message)
        assert expected.count(b"\r\n..dot\r\n") == 15
        for chunk in (size, size - 1, size + 1, 4096, 1):
            assert chunked(message, chunk) == expected, chunk


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from([b".", b"\r", b"\n", b"\r\n", b"a", b"..", b"\r\n.\r\n", b"\n.\n"]),
                max_size=40).map(b"".join),
       st.integers(min_value=1, max_value=7),
       st.one_of(st.none(), st.integers(min_value=0, max_value=4)))
def test_any_split_matches_the_reference(message, size, body_lines):
    expected = reference(message, body_lines)
    assert chunked(message, size, body_lines) == expected
    # The wire form always ends with exactly one CRLF before ".\r\n", and no
    # line in it is a lone "." before the end.
    assert expected.endswith(b".\r\n")
    assert b"\r\n.\r\n" not in expected[:-3] and not expected[:-3].startswith(b".\r\n")
