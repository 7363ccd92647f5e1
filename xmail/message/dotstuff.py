# -*- test-case-name: tests.message.test_dotstuff -*-
"""Dot-stuffing, the one home for it: POP3 multi-line responses (RFC 1939 §3)
and the outbound SMTP DATA stream (RFC 5321 §4.5.2).  The inbound side
(unstuffing while DATA is framed) belongs to the SMTP tokenizer.

`MultilineEncoder` — sans-IO encoder for the body of a POP3 multi-line
response (RETR, TOP).

Message bytes go in as chunks of any size, split anywhere (between CR and
LF, just before a dot, ...); wire bytes come out.  RFC 1939 §3:

- every line ends with CRLF: a bare LF becomes CRLF (the store already
  normalizes, but a file dropped into the Maildir by hand may not be);
- a line that starts with "." gets one more "." in front, the first line of
  the message included;
- the response ends with exactly one CRLF before the terminating ".": a
  missing final line ending is added, an existing one is not doubled.

A bare CR inside a line is data, passed through unchanged; a CR at the very
end of the message counts as a line ending.

With `body_lines` set the encoder does TOP (RFC 1939 §7): the header, the
blank line after it, then that many body lines; `done` turns true once
nothing more is wanted so the caller can stop reading the file.

Chunks are worked on with bytes.replace/find/count only, so the cost per
octet stays in C (see bench/pop3_bench.py).
"""

from __future__ import annotations

TERMINATOR = b".\r\n"


class MultilineEncoder:
    """Dot-stuffs and CRLF-normalizes a message streamed in chunks."""

    def __init__(self, body_lines: int | None = None):
        self._at_line_start = True  # the next octet sent starts a line
        self._pending_cr = False  # the last chunk ended in CR; LF may follow
        self._in_header = True
        self._body_lines_left = body_lines
        self.done = False  # TOP has all it wants; feed() ignores more input
        self._finished = False

    def feed(self, data: bytes) -> bytes:
        """Wire bytes for the next piece of the message (possibly empty)."""
        if self.done or self._finished:
            return b""
        if self._pending_cr:
            data = b"\r" + data
            self._pending_cr = False
        if data.endswith(b"\r"):
            # Whether this CR ends a line is known only with the next octet.
            data = data[:-1]
            self._pending_cr = True
        if self._body_lines_left is None and data.count(b"\n") == data.count(b"\r\n"):
            return self._emit_crlf(data)
        return self._emit(data.replace(b"\r\n", b"\n"))

    def finish(self) -> bytes:
        """The last wire bytes: pending line ending, then ".\\r\\n"."""
        if self._finished:
            return b""
        self._finished = True
        out = b""
        if self._pending_cr and not self.done:
            out = self._emit(b"\n")  # a final CR ends the last line
        if not self._at_line_start:
            out += b"\r\n"
        return out + TERMINATOR

    def _emit_crlf(self, data: bytes) -> bytes:
        """The common case, every LF already in a CRLF (the store's rule):
        one pass to stuff dots, no line-ending rewrite."""
        if not data:
            return b""
        # RFC 1939 §3.  Most messages have no line starting with ".": a
        # search is cheaper than a copy.
        out = data.replace(b"\n.", b"\n..") if b"\n." in data else data
        if self._at_line_start and data[:1] == b".":
            out = b"." + out
        self._at_line_start = data[-1:] == b"\n"
        return out

    def _emit(self, text: bytes) -> bytes:
        """text: message octets with LF line endings (bare CRs kept)."""
        if self._body_lines_left is not None:
            text = self._limit(text)
        if not text:
            return b""
        # RFC 1939 §3: byte-stuff lines that begin with the termination octet.
        out = text.replace(b"\n.", b"\n..")
        if self._at_line_start and text[:1] == b".":
            out = b"." + out
        self._at_line_start = text[-1:] == b"\n"
        return out.replace(b"\n", b"\r\n")

    def _limit(self, text: bytes) -> bytes:
        """TOP: cut text after the header, the blank line and N body lines."""
        pos = 0
        if self._in_header:
            # The header ends at the first empty line (RFC 5322 §2.1).
            if self._at_line_start and text[:1] == b"\n":
                pos = 1
            else:
                blank = text.find(b"\n\n")
                if blank < 0:
                    return text
                pos = blank + 2
            self._in_header = False
        left = self._body_lines_left
        assert left is not None
        complete = text.count(b"\n", pos)
        if complete < left:
            self._body_lines_left = left - complete
            return text
        for _ in range(left):
            pos = text.index(b"\n", pos) + 1
        self._body_lines_left = 0
        self.done = True
        return text[:pos]


def encode_message(message: bytes, body_lines: int | None = None) -> bytes:
    """The whole multi-line response body of a message held in memory."""
    encoder = MultilineEncoder(body_lines)
    return encoder.feed(message) + encoder.finish()


class DotStuffer:
    """RFC 5321 §4.5.2: a line that begins with "." gets one more "." in the
    DATA stream; `finish()` returns the terminating CRLF.CRLF.

    Input is expected with CRLF line endings (the spool normalizes); state
    carries over chunk boundaries, so any chunking gives the same output.
    """

    def __init__(self) -> None:
        self._at_line_start = True
        self._tail = b""  # the last two bytes written

    def feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        out = chunk.replace(b"\n.", b"\n..")
        if self._at_line_start and chunk.startswith(b"."):
            out = b"." + out
        self._at_line_start = chunk.endswith(b"\n")
        self._tail = (self._tail + chunk)[-2:]
        return out

    def finish(self) -> bytes:
        # The terminator must follow a CRLF, never a bare LF (SMTP smuggling).
        if self._tail in (b"", b"\r\n"):
            return b".\r\n"
        return b"\r\n.\r\n"
