# -*- test-case-name: tests.protocols.test_imap_tokenizer -*-
"""Sans-IO framing of the IMAP client stream (RFC 3501 §2.2, §4, §7.5).

`CommandReader.feed(bytes)` takes whatever arrived; `next_event()` returns the
next framing event or None when more input is needed.  Nothing here touches a
socket or the reactor, so the whole module is tested by feeding bytes whole
and one at a time.

A command line is turned into a tree of tokens:

- `Atom` (bytes): anything up to SP, "(", ")" or a quote.  Brackets stay
  inside atoms, so ``BODY[HEADER.FIELDS (FROM)]<0.10>`` arrives as the atom
  ``BODY[HEADER.FIELDS``, the list ``(FROM)`` and the atom ``]<0.10>``; the
  grammar joins them again (Dovecot's parser does the same).
- `QuotedString` / `LiteralString` (bytes, both `String`): the value, without
  quotes or escapes.  A literal may stand wherever a string may (§4.3).
- `list`: a parenthesised list, nested at most `max_depth` deep.

Events:

- `Command(items)`: a whole command, literals included.
- `ContinueLiteral(size)`: a synchronizing literal ``{n}`` was announced and
  accepted; the server must now send ``+`` (§7.5).  Non-synchronizing
  literals ``{n+}`` (RFC 7888) need no reply.
- `Rejected(tag, reason, too_big)`: the command was malformed or too large; it
  has been skipped entirely (the literal of a refused ``{n}`` is never sent by
  the client; the bytes of a refused ``{n+}`` are read and dropped).
- `RawLine(line)`: one line read in raw mode (AUTHENTICATE responses, IDLE's
  DONE), requested with `expect_raw_line()`.

Every buffer is bounded: a line (without its literals) by `max_line`, a
literal by `literal_limit(items_so_far)`, which the server uses to allow
APPENDLIMIT for APPEND, a few kB before login and a small size elsewhere.
A literal larger than `spool_threshold`, or one that would take the literals
held in memory by this command past `max_memory_literals`, is handed chunk
by chunk to `spool(size)` (the server gives a file under data_dir/tmp) and
stands in the tree as a `SpooledLiteral`, so a 40 MB APPEND (or a command
with many literals) never sits in memory.

Literal bytes leave the input buffer as they arrive (into the spool or the
literal being assembled), so `buffered()` — what the server's flow control
watches — never counts a literal in progress: a literal of any size up to
its limit completes however the server bounds its pending input (issue 15:
a literal between the 256 KiB read-pause bound and the 1 MiB spool threshold
used to wait for bytes the paused socket would never deliver).
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

DEFAULT_MAX_LINE = 65536
DEFAULT_MAX_DEPTH = 16
DEFAULT_LITERAL_LIMIT = 65536


class Atom(bytes):
    """An atom as sent by the client (case preserved)."""

    def __repr__(self) -> str:
        return f"Atom({bytes(self)!r})"


class String(bytes):
    """A string token, quoted or literal."""


class QuotedString(String):
    def __repr__(self) -> str:
        return f"Quoted({bytes(self)!r})"


class LiteralString(String):
    def __repr__(self) -> str:
        return f"Literal({bytes(self)!r})"


class Literal8String(LiteralString):
    """A literal8 ``~{n}`` (RFC 3516 §4.3): binary data, NUL allowed."""

    def __repr__(self) -> str:
        return f"Literal8({bytes(self)!r})"


@dataclass(frozen=True, slots=True)
class SpooledLiteral:
    """A literal too large to hold in memory, written to a file at `path`."""

    path: str
    size: int
    literal8: bool = False  # sent as ~{n} (RFC 3516 §4.3)


class LiteralSpool(Protocol):
    """Where a large literal goes instead of memory (supplied by the server:
    a temporary file).  The tokenizer only calls these methods."""

    def write(self, data: bytes) -> None: ...
    def finish(self) -> SpooledLiteral: ...  # the token standing for the literal
    def release(self) -> None: ...  # the command was refused: drop the data


@dataclass(frozen=True, slots=True)
class Command:
    items: list[Any]

    @property
    def tag(self) -> bytes | None:
        return tag_of(self.items)


@dataclass(frozen=True, slots=True)
class ContinueLiteral:
    size: int


@dataclass(frozen=True, slots=True)
class Rejected:
    tag: bytes | None
    reason: str
    too_big: bool = False  # a literal over the limit (APPEND: NO [TOOBIG])
    # A non-synchronising literal over the limit: its bytes are already on
    # the way and may be endless, so the server closes (RFC 7888 §4).
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class RawLine:
    line: bytes


Event = Command | ContinueLiteral | Rejected | RawLine

# RFC 3501 §9: literal = "{" number "}" CRLF *CHAR8; RFC 7888: "{" number "+}";
# RFC 3516 §4.3: literal8 = "~{" number ["+"] "}" CRLF *OCTET
_LITERAL_MARKER = re.compile(rb"(~?)\{(\d{1,19})(\+?)\}\Z")
# Characters that end an atom.  Everything else the client sends is kept and
# judged by the grammar (which knows whether "*", "%", "\" or "]" are allowed).
_ATOM = re.compile(rb'[^ ()"\x00-\x1f\x7f]+')
_TAG = re.compile(rb"[^ (){%*\"\\+\x00-\x1f\x7f-\xff]+\Z")


_HEAD_BYTES = 128  # enough for any sane tag


def tag_of(items: list[Any]) -> bytes | None:
    """The tag of a (possibly partial) command, if it has a valid one."""
    if items and isinstance(items[0], Atom) and _TAG.match(items[0]):
        return bytes(items[0])
    return None


class _LineSyntaxError(Exception):
    pass


class CommandReader:
    """Incremental IMAP command framing with bounded buffers."""

    def __init__(
        self,
        *,
        max_line: int = DEFAULT_MAX_LINE,
        max_depth: int = DEFAULT_MAX_DEPTH,
        literal_limit: Callable[[list[Any]], int] | None = None,
        spool: Callable[[int], LiteralSpool] | None = None,
        spool_threshold: int = 1 << 20,
        max_memory_literals: int = 1 << 20,
    ):
        self.max_line = max_line
        self.max_depth = max_depth
        self._literal_limit = literal_limit or (lambda items: DEFAULT_LITERAL_LIMIT)
        # Literals above spool_threshold stream into spool(size) as they arrive.
        self._spool = spool
        self._spool_threshold = spool_threshold
        self._max_memory_literals = max_memory_literals
        self._buf = bytearray()
        self._scan_from = 0  # where to resume looking for LF
        self._raw = False
        self._dead = False  # a fatal Rejected was returned: nothing more is framed
        self._reset_command()

    # -- public API ----------------------------------------------------------
    def feed(self, data: bytes) -> None:
        if self._dead:
            return  # after a fatal refusal the rest is literal data, never commands
        self._buf += data

    def buffered(self) -> int:
        """Bytes received and not yet consumed (for flow control)."""
        return len(self._buf)

    def idle(self) -> bool:
        """True when no command is under way: nothing buffered, no line
        segment, literal or over-long line in progress (the server's
        whole-command deadline runs while this is False)."""
        return (not self._buf and self._literal_needed is None and not self._root
                and self._line_total == 0 and not self._overflow and self._error is None)

    def discard_buffered(self) -> None:
        """Drop everything not yet consumed: after STARTTLS, plaintext the
        client pipelined behind the command must not be executed (RFC 3501
        §6.2.1, the STARTTLS command-injection class of bugs)."""
        self._buf.clear()
        self._scan_from = 0
        self.close()

    def take_buffered(self) -> bytes:
        """Remove and return the bytes not yet consumed: after COMPRESS they
        are compressed and must go through the inflater (RFC 4978 §3)."""
        data = bytes(self._buf)
        self._buf.clear()
        self._scan_from = 0
        return data

    def close(self) -> None:
        """Forget the command in progress, releasing its spools."""
        for sink in self._spooled + ([self._sink] if self._sink is not None else []):
            sink.release()
        self._reset_command()

    def expect_raw_line(self) -> None:
        """The next event is a RawLine (AUTHENTICATE response, IDLE DONE)."""
        self._raw = True

    def next_event(self) -> Event | None:
        while not self._dead:
            if self._literal_needed is not None:
                if not self._take_literal():
                    return None
                continue
            line = self._take_line()
            if line is None:
                return None
            if self._raw:
                self._raw = False
                if self._overflow:
                    self._overflow = False
                    return Rejected(None, "line too long")
                return RawLine(line)
            event = self._segment(line)
            if event is not None:
                return event
        return None

    # -- internals -------------------------------------------------------------
    def _reset_command(self) -> None:
        self._root: list[Any] = []
        self._stack: list[list[Any]] = [self._root]
        self._line_total = 0  # bytes of line segments of this command
        self._literal_total = 0
        self._literal_needed: int | None = None
        self._literal_data = bytearray()  # the in-memory literal being read
        self._memory_total = 0  # bytes of this command's literals held in memory
        self._discard_literal = False
        self._literal8 = False  # the literal being read was announced as ~{n}
        self._sink: LiteralSpool | None = None  # the spool of the literal being read
        self._spooled: list[LiteralSpool] = []  # finished spools of this command
        self._error: str | None = None  # set: the command is being skipped
        self._too_big = False
        self._overflow = False  # the current line exceeded max_line
        # The first word of the command line as sent, for the tag of a
        # rejection: the parsed first atom may be cut short ("a\x01b").
        self._head: bytes | None = None

    def _take_line(self) -> bytes | None:
        """One line without its line ending, or None if incomplete.  Lines
        over the limit are dropped up to their end and flagged."""
        lf = self._buf.find(b"\n", self._scan_from)
        if lf < 0:
            self._scan_from = len(self._buf)
            budget = self.max_line - self._line_total
            if len(self._buf) > budget:
                # Keep memory bounded: drop what we have, remember the line
                # is bad, keep dropping until its end.
                self._remember_head(bytes(self._buf[:_HEAD_BYTES]))
                self._buf.clear()
                self._scan_from = 0
                self._overflow = True
            return None
        line = bytes(self._buf[:lf])
        del self._buf[: lf + 1]
        self._scan_from = 0
        if line.endswith(b"\r"):
            line = line[:-1]
        if self._overflow and not self._raw:
            # The tail of an over-long line: its literal markers are not
            # trustworthy, so the command simply ends here.
            return b""
        return line

    def _take_literal(self) -> bool:
        n = self._literal_needed
        assert n is not None
        if self._sink is not None:
            take = min(n, len(self._buf))
            if take:
                self._sink.write(bytes(self._buf[:take]))
                del self._buf[:take]
                n = self._literal_needed = n - take
            if n:
                return False
            self._literal_needed = None
            spooled = self._sink.finish()
            if self._literal8:
                spooled = dataclasses.replace(spooled, literal8=True)
            self._stack[-1].append(spooled)
            self._spooled.append(self._sink)
            self._sink = None
            return True
        take = min(n, len(self._buf))
        if take:
            if not self._discard_literal:  # a refused {n+} is dropped as it comes
                self._literal_data += self._buf[:take]
            del self._buf[:take]
            self._scan_from = 0
            n = self._literal_needed = n - take
        if n:
            return False
        self._literal_needed = None
        if not self._discard_literal:
            data = bytes(self._literal_data)
            self._stack[-1].append(Literal8String(data) if self._literal8 else LiteralString(data))
        self._literal_data = bytearray()
        self._discard_literal = False
        return True

    def _remember_head(self, start: bytes) -> None:
        if self._head is None and self._line_total == 0:
            word, space, _rest = start.partition(b" ")
            # A first word that runs past what we kept is no tag we can repeat.
            self._head = word if space or len(start) < _HEAD_BYTES else b""

    def _segment(self, line: bytes) -> Event | None:
        """Parse one line segment (up to CRLF, literals excluded)."""
        self._remember_head(line[:_HEAD_BYTES])
        self._line_total += len(line)
        if (self._overflow or self._line_total > self.max_line) and self._error is None:
            self._error = "line too long"
        marker = _LITERAL_MARKER.search(line)
        if marker is not None and self._literal_marker_starts_token(line, marker.start()):
            body = line[: marker.start()]
        else:
            marker = None
            body = line
        if self._error is None and not self._overflow:
            try:
                self._tokens(body)
            except _LineSyntaxError as e:
                self._error = str(e)
        overflow = self._overflow
        self._overflow = False
        if marker is not None and not overflow:
            size = int(marker.group(2))
            synchronizing = not marker.group(3)
            self._literal8 = bool(marker.group(1))
            if self._error is None:
                self._literal_total += size
                if self._literal_total > self._literal_limit(self._root):
                    self._error = "literal too large"
                    self._too_big = True
            if self._error is None:
                self._literal_needed = size
                if self._spool is not None and (
                        size > self._spool_threshold
                        or self._memory_total + size > self._max_memory_literals):
                    self._sink = self._spool(size)
                else:
                    self._memory_total += size
                return ContinueLiteral(size) if synchronizing else None
            if not synchronizing:
                if self._too_big or size > self._literal_limit(self._root):
                    # RFC 7888 §4: a {n+} over the limit cannot be refused
                    # before it is sent; reading (possibly endless) bytes to
                    # drop them serves nobody, so the command ends the session.
                    return self._end_command(fatal=True)
                # RFC 7888 §4: the client sends {n+} data unasked; read and
                # drop it (within the limit, so bounded).
                self._literal_needed = size
                self._discard_literal = True
                return None
            # A refused {n}: the client waits for "+" that never comes and
            # reads our tagged reply instead; the command ends here.
        return self._end_command()

    @staticmethod
    def _literal_marker_starts_token(line: bytes, start: int) -> bool:
        return start == 0 or line[start - 1 : start] in (b" ", b"(", b")")

    def _end_command(self, *, fatal: bool = False) -> Event:
        if fatal:
            self._dead = True
            self._buf.clear()
        root, error, too_big, head = self._root, self._error, self._too_big, self._head
        if error is None and len(self._stack) != 1:
            error = "unbalanced parentheses"
        spooled = self._spooled
        self._reset_command()
        if error is not None:
            for sink in spooled:
                sink.release()
            # RFC 3501 §7.1.3: tagged BAD whenever the tag could be read.
            tag = head if head and _TAG.match(head) else None
            return Rejected(tag, error, too_big, fatal)
        if not root:
            return Rejected(None, "empty command line")
        return Command(root)

    def _tokens(self, body: bytes) -> None:
        pos, end = 0, len(body)
        while pos < end:
            c = body[pos]
            if c == 0x20:  # SP
                pos += 1
            elif c == 0x28:  # (
                if len(self._stack) > self.max_depth:
                    raise _LineSyntaxError("lists nested too deeply")
                new: list[Any] = []
                self._stack[-1].append(new)
                self._stack.append(new)
                pos += 1
            elif c == 0x29:  # )
                if len(self._stack) == 1:
                    raise _LineSyntaxError("unbalanced parentheses")
                self._stack.pop()
                pos += 1
            elif c == 0x22:  # "
                pos = self._quoted(body, pos + 1)
            else:
                m = _ATOM.match(body, pos)
                if m is None:
                    raise _LineSyntaxError("control character in command")
                if body[pos] == 0x7B:  # "{" that is not a literal marker at the end
                    raise _LineSyntaxError("literal marker must end the line")
                self._stack[-1].append(Atom(m.group()))
                pos = m.end()

    def _quoted(self, body: bytes, pos: int) -> int:
        # RFC 3501 §9: quoted = DQUOTE *QUOTED-CHAR DQUOTE;
        # QUOTED-CHAR = <any TEXT-CHAR except quoted-specials> / "\" quoted-specials
        out = bytearray()
        end = len(body)
        while pos < end:
            c = body[pos]
            if c == 0x22:
                self._stack[-1].append(QuotedString(bytes(out)))
                return pos + 1
            if c == 0x5C:
                if pos + 1 >= end or body[pos + 1] not in (0x22, 0x5C):
                    raise _LineSyntaxError("bad escape in quoted string")
                out.append(body[pos + 1])
                pos += 2
                continue
            if c == 0 or c == 0x0D:
                raise _LineSyntaxError("NUL or CR in quoted string")
            out.append(c)
            pos += 1
        raise _LineSyntaxError("unterminated quoted string")
