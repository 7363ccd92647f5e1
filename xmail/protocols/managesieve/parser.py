# -*- test-case-name: tests.protocols.managesieve.test_parser -*-
"""Sans-IO framing of the ManageSieve client stream (RFC 5804 §4).

Bytes go in with `receive_data`; `next_event` hands out one event at a
time: a `Command`, a `SaslResponse` (while an AUTHENTICATE exchange waits
for the client's string), a `Rejected`, or `NEED_DATA`.  No I/O, no Twisted.

Grammar (RFC 5804 §4, the parts a client sends):

    command     = command-name *(SP argument) CRLF
    argument    = string / number
    string      = quoted / literal-c2s
    quoted      = DQUOTE *QUOTED-CHAR DQUOTE   ; at most 1024 octets (errata 2655)
    QUOTED-CHAR = SAFE-UTF8-CHAR / "\\" QUOTED-SPECIALS
    literal-c2s = "{" number "+}" CRLF *OCTET
    number      = 1*DIGIT                      ; a 32-bit unsigned number

RFC 5804 has no continuation request for client literals, so a
synchronising ``{n}`` (which some clients still send) is read exactly like
``{n+}``: the octets follow at once in both cases.

Every buffer is bounded and every byte is looked at a bounded number of
times: a command's line segments (literals excluded) by `max_line`, each
literal by `literal_limit` (the session raises it after login: a script is
at most MAX_SCRIPT_SIZE), the literals of one command together by
`literal_limit + max_line`.  A literal over its limit is never held: if it
is at most `discard_limit` octets its bytes are counted off as they arrive
and dropped, and the command is then answered as `Rejected(too_big=True)`
(the session's ``NO (QUOTA/MAXSIZE)``); a larger one is `Rejected(fatal=True)`
at once and the parser reads nothing more (its bytes may be endless).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# A command line without its literals.  RFC 5804 sets no limit; the longest
# sane one is PUTSCRIPT/RENAMESCRIPT with two 1024-octet quoted names.
MAX_COMMAND_LINE = 8192
MAX_QUOTED = 1024  # RFC 5804 §4 (errata 2655: octets between the quotes)
MAX_ARGUMENTS = 4  # no command takes more than two; room for sloppy clients
MAX_NAME = 20  # command names: UNAUTHENTICATE is the longest (14)
MAX_NUMBER = 4294967295  # RFC 5804 §4: number is 32-bit unsigned
# Before login a literal only carries a SASL response or a name.
PREAUTH_LITERAL_LIMIT = 4096
PREAUTH_DISCARD_LIMIT = 64 * 1024

# "{" number ["+"] "}" at the very end of a line segment.
_LITERAL_MARKER = re.compile(rb"\{([0-9]{1,20})(\+?)\}\Z")
_NAME = re.compile(rb"[A-Za-z]+")
_NUMBER = re.compile(rb"[0-9]+")
# An atom as a lenient server reads it (only "*" cancelling SASL uses one).
_ATOM = re.compile(rb'[^ "{}()\\\x00-\x1f\x7f]+')


@dataclass(frozen=True, slots=True)
class String:
    """A quoted string or a literal: the octets, unescaped."""

    value: bytes
    literal: bool = False


@dataclass(frozen=True, slots=True)
class Number:
    value: int


@dataclass(frozen=True, slots=True)
class Atom:
    """A bare word where a string was expected (the grammar has none; kept
    so the session can say "a string, please" instead of a syntax error)."""

    value: bytes


Argument = String | Number | Atom


@dataclass(frozen=True, slots=True)
class Command:
    """One command: the name upper-cased and its arguments."""

    name: str
    args: tuple[Argument, ...] = ()


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """The client's answer to a server challenge (RFC 5804 §2.1): the string
    as sent (still base64), or b"*" for a cancel."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Rejected:
    """A command that cannot be run, skipped whole (its literals read and
    dropped).  `too_big`: a literal over the limit; `fatal`: one so big the
    connection must end (nothing more is read)."""

    reason: str
    too_big: bool = False
    fatal: bool = False


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()

Event = Command | SaslResponse | Rejected | _NeedData


class _SyntaxError(Exception):
    pass


class CommandParser:
    """Incremental ManageSieve command framing with bounded buffers."""

    def __init__(self, *, max_line: int = MAX_COMMAND_LINE,
                 literal_limit: int = PREAUTH_LITERAL_LIMIT,
                 discard_limit: int = PREAUTH_DISCARD_LIMIT,
                 max_args: int = MAX_ARGUMENTS):
        self.max_line = max_line
        self.literal_limit = literal_limit
        self.discard_limit = discard_limit
        self.max_args = max_args
        self._buffer = bytearray()
        self._scan_from = 0  # where the search for LF resumes
        self._sasl = False
        self._dead = False
        self._reset()

    def _reset(self) -> None:
        self._items: list[Argument] = []
        self._name: bytes | None = None
        self._line_used = 0  # octets of this command's line segments so far
        self._literal_used = 0  # octets of its literals kept so far
        self._literal_left = 0  # octets of the current literal still to come
        self._literal = bytearray()
        self._discarding = False  # the current literal is being dropped
        self._error: Rejected | None = None  # the command is refused; skip to its end
        self._skip_line = False  # skip to the next LF (an over-long line)
        self._started = False  # some octet of this command has been read

    # -- the public API ----------------------------------------------------------
    @property
    def buffered(self) -> int:
        """Octets received and not yet consumed (for read back-pressure)."""
        return len(self._buffer)

    @property
    def idle(self) -> bool:
        """True between commands (the server's whole-command deadline runs
        otherwise)."""
        return not self._buffer and not self._started

    def receive_data(self, data: bytes) -> None:
        if not self._dead:
            self._buffer += data

    def expect_sasl_response(self, expecting: bool = True) -> None:
        """The next line is the client's SASL string, not a command."""
        self._sasl = expecting

    def discard_buffer(self) -> None:
        """Forget everything received and not yet handed out: RFC 5804 §2.2
        (cf. RFC 3207 §4.2) -- what was pipelined after STARTTLS came in
        plaintext and must not be acted upon once TLS is up."""
        self._buffer.clear()
        self._scan_from = 0
        self._reset()

    def next_event(self) -> Event:
        if self._dead:
            return NEED_DATA
        while True:
            if self._literal_left:
                if not self._take_literal():
                    return NEED_DATA
                continue
            if self._skip_line:
                end = self._buffer.find(b"\n", self._scan_from)
                if end < 0:
                    # Nothing of an over-long line is kept.
                    self._buffer.clear()
                    self._scan_from = 0
                    return NEED_DATA
                del self._buffer[: end + 1]
                self._scan_from = 0
                return self._finish_rejected()
            allowed = self.max_line - self._line_used
            end = self._buffer.find(b"\n", self._scan_from, allowed)
            if end < 0:
                if len(self._buffer) >= allowed:
                    self._skip_line = True
                    self._scan_from = min(max(allowed, 0), len(self._buffer))
                    self._started = True
                    if self._error is None:
                        self._error = Rejected("command line too long")
                    continue
                self._scan_from = len(self._buffer)
                if self._buffer:
                    self._started = True
                return NEED_DATA
            segment = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            self._scan_from = 0
            self._started = True
            self._line_used += end + 1
            if segment.endswith(b"\r"):
                segment = segment[:-1]
            event = self._segment(segment)
            if event is not None:
                return event

    # -- literals --------------------------------------------------------------------
    def _take_literal(self) -> bool:
        """Move literal octets out of the buffer; True when it is complete."""
        if not self._buffer:
            return False
        n = min(self._literal_left, len(self._buffer))
        if not self._discarding:
            self._literal += self._buffer[:n]
        del self._buffer[:n]
        self._literal_left -= n
        if self._literal_left:
            return False
        if not self._discarding:
            self._items.append(String(bytes(self._literal), literal=True))
            self._literal = bytearray()
        self._discarding = False
        return True

    def _start_literal(self, size: int) -> Rejected | None:
        limit = self.literal_limit
        if size > limit or self._literal_used + size > limit + self.max_line:
            if size > self.discard_limit:
                # Its octets are on their way and may never end: stop here.
                self._dead = True
                self._buffer.clear()
                self._reset()
                return Rejected(f"literal of {size} octets is too large", too_big=True, fatal=True)
            self._error = Rejected(f"literal of {size} octets is larger than {limit}", too_big=True)
            self._discarding = True
        elif self._error is not None:
            self._discarding = True  # the command is refused already: drop it
        else:
            self._literal_used += size
        self._literal_left = size
        if size == 0:
            if not self._discarding:
                self._items.append(String(b"", literal=True))
            self._discarding = False
        return None

    # -- one line segment ------------------------------------------------------------
    def _segment(self, segment: bytes) -> Event | None:
        """A line segment (up to CRLF or a literal marker).  None: the
        command goes on with a literal."""
        marker = _LITERAL_MARKER.search(segment)
        body = segment[: marker.start()] if marker else segment
        if self._error is None:
            try:
                self._tokens(body, literal_follows=marker is not None)
            except _SyntaxError as e:
                self._error = Rejected(str(e))
        if marker is not None:
            size = int(marker.group(1))
            fatal = self._start_literal(size)
            if fatal is not None:
                return fatal
            return None
        if self._error is not None:
            return self._finish_rejected()
        return self._finish()

    def _finish_rejected(self) -> Rejected:
        error = self._error or Rejected("syntax error")
        self._sasl = False
        self._reset()
        return error

    def _finish(self) -> Event:
        items, name = self._items, self._name
        sasl, self._sasl = self._sasl, False
        self._reset()
        if sasl:
            # RFC 5804 §2.1: a client response is one string; "*" cancels.
            if len(items) == 1 and isinstance(items[0], String):
                return SaslResponse(items[0].value)
            if len(items) == 1 and isinstance(items[0], Atom) and items[0].value == b"*":
                return SaslResponse(b"*")
            return Rejected("expected a SASL response string")
        if name is None:
            return Rejected("empty command")
        return Command(name.decode("ascii").upper(), tuple(items))

    def _tokens(self, body: bytes, *, literal_follows: bool) -> None:
        """Tokenize one segment into self._items; one pass, no backtracking."""
        pos = 0
        n = len(body)
        first = not self._sasl and self._name is None and not self._items
        if first:
            m = _NAME.match(body)
            if m is None or m.end() - m.start() > MAX_NAME:
                raise _SyntaxError("expected a command name")
            self._name = m.group()
            pos = m.end()
        while pos < n:
            if self._items or self._name is not None:
                if body[pos:pos + 1] != b" ":
                    raise _SyntaxError("expected a space between arguments")
                pos += 1
                if pos == n:
                    if literal_follows:
                        break
                    raise _SyntaxError("trailing space")
            if len(self._items) >= self.max_args:
                raise _SyntaxError("too many arguments")
            c = body[pos]
            if c == 0x22:  # DQUOTE
                pos = self._quoted(body, pos + 1)
            elif 0x30 <= c <= 0x39:
                m = _NUMBER.match(body, pos)
                assert m is not None
                if m.end() - m.start() > 10 or int(m.group()) > MAX_NUMBER:
                    raise _SyntaxError("number too large")
                self._items.append(Number(int(m.group())))
                pos = m.end()
            else:
                m = _ATOM.match(body, pos)
                if m is None:
                    raise _SyntaxError("invalid character in command")
                self._items.append(Atom(m.group()))
                pos = m.end()
        if literal_follows and (pos == 0 or body[-1:] != b" ") and (self._items or self._name):
            # "{n+}" must follow a space: "CMD {3+}" or "CMD "x" {3+}".
            if not (self._sasl and not self._items and pos == 0):
                raise _SyntaxError("expected a space before a literal")

    def _quoted(self, body: bytes, pos: int) -> int:
        """A quoted string starting after its DQUOTE; returns the position
        after the closing one."""
        out = bytearray()
        n = len(body)
        while pos < n:
            c = body[pos]
            if c == 0x22:
                self._items.append(String(bytes(out)))
                return pos + 1
            if c == 0x5C:  # backslash: QUOTED-SPECIALS only
                if pos + 1 >= n or body[pos + 1] not in (0x22, 0x5C):
                    raise _SyntaxError("invalid escape in quoted string")
                c = body[pos + 1]
                pos += 1
            elif c == 0 or c == 0x0D:
                raise _SyntaxError("invalid character in quoted string")
            out.append(c)
            if len(out) > MAX_QUOTED:
                raise _SyntaxError(f"quoted string longer than {MAX_QUOTED} octets, use a literal")
            pos += 1
        raise _SyntaxError("unterminated quoted string")
