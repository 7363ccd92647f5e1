# -*- test-case-name: tests.filter.authcheck.test_body -*-
"""DKIM body hashes computed while streaming the spool file (RFC 6376
§3.4.3, §3.4.4, §3.7), so that dkimpy only ever holds the header section.

A message's body is read in CHUNK-sized pieces through three small
stages, each keeping back at most the few octets whose meaning depends on
what follows:

1. line ends: CRLF or bare LF both end a line (dkimpy reads messages that
   way); a trailing CR waits for the next piece;
2. relaxed only (§3.4.4): white space before a line end removed, runs of
   white space made one SP; a trailing run waits (as a flag, not octets);
3. empty lines at the end of the body are ignored (§3.4.3, §3.4.4): a
   trailing run of CRLFs is kept as a count and written out only when
   more text follows.

The result is byte-for-byte what dkimpy's own canonicalization gives for
the whole body (tests.filter.authcheck.test_body compares them on
arbitrary input split at arbitrary points), and every piece is handled by
linear regex passes over at most CHUNK octets: the worker thread never
holds the GIL for long, so the reactor keeps turning.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from typing import IO, Any

CHUNK = 64 * 1024
CRLF = b"\r\n"
_LINE_END = re.compile(b"\r?\n")
_WSP_BEFORE_CRLF = re.compile(b"[\t ]+\r\n")
_WSP = re.compile(b"[\t ]+")
_BLANK_LINE = re.compile(b"(?:^|\n)\r?\n")
MAX_HEADER = 8 * 1024 * 1024  # octets searched for the end of the header section


class BodyCanonicalizer:
    """Feed body octets; `feed` and `finish` return canonical octets."""

    def __init__(self, relaxed: bool):
        self.relaxed = relaxed
        self._cr = False        # stage 1: a CR ended the last piece
        self._space = False     # stage 2: white space ended the last piece
        self._newlines = 0      # stage 3: CRLFs held back at the end
        self._written = False   # anything but empty lines written yet

    def feed(self, data: bytes) -> Iterable[bytes]:
        if self._cr:
            data = b"\r" + data
            self._cr = False
        if data.endswith(b"\r"):
            self._cr = True
            data = data[:-1]
        return self._canonical(_LINE_END.sub(CRLF, data))

    def finish(self) -> Iterable[bytes]:
        tail = b"\r" if self._cr else b""
        self._cr = False
        yield from self._canonical(tail)
        if self._space:  # white space at the very end, without a line end
            yield from self._text(b" ")
        # one line end closes the body; an empty relaxed body hashes as
        # nothing (RFC 6376 errata 3192, as dkimpy does)
        if self._written or not self.relaxed:
            yield CRLF

    def _canonical(self, data: bytes) -> Iterable[bytes]:
        if not self.relaxed:
            return self._text(data)
        if self._space:
            data = b" " + data
        data = _WSP.sub(b" ", _WSP_BEFORE_CRLF.sub(CRLF, data))
        self._space = data.endswith(b" ")
        return self._text(data[:-1] if self._space else data)

    def _text(self, data: bytes) -> Iterable[bytes]:
        if not data:
            return
        end = len(data)
        while data.endswith(CRLF, 0, end):
            end -= 2
        if end == 0:  # only line ends: they may be the body's last ones
            self._newlines += len(data) // 2
            return
        while self._newlines:
            n = min(self._newlines, CHUNK // 2)
            self._newlines -= n
            yield CRLF * n
        self._written = True
        yield data[:end]
        self._newlines = (len(data) - end) // 2


def split_header(stream: IO[bytes]) -> tuple[bytes, int]:
    """(the header section with its empty line, the body's offset), read
    the way dkimpy reads a message: the first empty line (CRLF or LF)
    ends it; without one, all of MAX_HEADER is header."""
    buffer = bytearray()
    while len(buffer) < MAX_HEADER:
        piece = stream.read(CHUNK)
        if not piece:
            break
        start = max(len(buffer) - 2, 0)  # "\n" + "\r\n" may span two pieces
        buffer += piece
        found = _BLANK_LINE.search(buffer, start)
        if found:
            return bytes(buffer[:found.end()]), found.end()
    return bytes(buffer) + CRLF, len(buffer)


def body_hash(open_message: Callable[[], IO[bytes]], offset: int, relaxed: bool,
              hasher: Callable[[], Any], limit: int | None = None) -> bytes:
    """The digest of the canonical body (first `limit` octets, §3.5 l=)."""
    h = hasher()
    canon = BodyCanonicalizer(relaxed)
    left = limit

    def take(pieces: Iterable[bytes]) -> bool:
        nonlocal left
        for piece in pieces:
            if left is not None:
                piece = piece[:left]
                left -= len(piece)
            h.update(piece)
            if left == 0:
                return False
        return True

    with open_message() as stream:
        stream.seek(offset)
        while True:
            data = stream.read(CHUNK)
            if not data:
                take(canon.finish())
                break
            if not take(canon.feed(data)):
                break
    return h.digest()
