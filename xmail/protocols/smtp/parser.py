# -*- test-case-name: tests.protocols.test_smtp_parser -*-
"""Sans-IO SMTP framing: bytes in, events out, every buffer bounded.

`SMTPParser.receive_data(bytes)` stores input; `next_event()` returns one
event or `NEED_DATA`.  The session switches the framing mode between events
(`start_data()` after it answered 354, `start_chunk(n)` for BDAT), exactly
as h11 does, so commands pipelined behind DATA or BDAT are never read as
message content and vice versa.

SMTP smuggling (CVE-2023-51764 class): the end of DATA is recognised only as
<CRLF>.<CRLF> — a "." line that ends in, or follows a line ending in, a bare
LF or CR is message content.  Content keeps its line endings here; the spool
(xmail.protocols.smtp.spool) turns every bare CR or LF into CRLF, so a later
relay dot-stuffs every line that could end its own DATA.
"""

from __future__ import annotations

import re
from collections import deque
from dataclasses import dataclass

# RFC 5321 §4.5.3.1.4: 512 octets for a command line including CRLF; RFC 1869
# §4.1.2 lets each extension raise it and RFC 4954 §4 allows 12288 for AUTH
# with an initial response.  The framing bound is the largest of these; the
# session applies the per-command limit.
COMMAND_LINE_BOUND = 12288
# RFC 5321 §4.5.3.1.6: a text line is at most 1000 octets including CRLF.
TEXT_LINE_LIMIT = 1000


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()


@dataclass(frozen=True, slots=True)
class CommandLine:
    """One command line without its line ending (CRLF or a bare LF)."""

    line: bytes


@dataclass(frozen=True, slots=True)
class LineTooLong:
    """A command line longer than COMMAND_LINE_BOUND; it was discarded."""


@dataclass(frozen=True, slots=True)
class BodyData:
    """Message content: dot-unstuffed for DATA, as sent for BDAT."""

    data: bytes


@dataclass(frozen=True, slots=True)
class DataEnd:
    """<CRLF>.<CRLF> seen; the parser is back in command mode."""

    line_too_long: bool = False


@dataclass(frozen=True, slots=True)
class ChunkEnd:
    """The announced BDAT chunk size has been read; back in command mode."""

    size: int


Event = CommandLine | LineTooLong | BodyData | DataEnd | ChunkEnd

# A "." at the start of a line followed by more than its line ending is a
# stuffed dot (RFC 5321 §4.5.2).  A lone "." that is not the terminator
# (bare-LF variants) stays content.
_STUFFED_DOT = re.compile(rb"\n\.(?!\r?\n)")

COMMAND, DATA, BDAT = "command", "data", "bdat"


class SMTPParser:
    """Framing state of one SMTP connection (no I/O, no Twisted)."""

    def __init__(self, command_line_bound: int = COMMAND_LINE_BOUND):
        self.mode = COMMAND
        self._bound = command_line_bound
        self._buf = b""
        self._events: deque[Event] = deque()
        self._discarding = False  # inside an over-long command line
        # DATA state
        self._bol = True  # at the start of a content line
        self._bol_crlf = True  # ... and the previous line ended with CRLF
        self._prev_cr = False  # the last content byte emitted was CR
        self._long_line = False
        self._partial_len = 0  # length of a flushed, still open content line
        # BDAT state
        self._chunk_left = 0
        self._chunk_size = 0

    # -- input ---------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        if self._discarding and self.mode == COMMAND:
            nl = data.find(b"\n")
            if nl < 0:
                return
            data = data[nl + 1 :]
            self._discarding = False
            self._events.append(LineTooLong())
        self._buf += data

    def discard_buffer(self) -> int:
        """Drop unread input (RFC 3207 §4.2, after STARTTLS); returns its size."""
        dropped = len(self._buf)
        self._buf = b""
        self._events.clear()
        self._discarding = False
        return dropped

    @property
    def buffered(self) -> int:
        return len(self._buf)

    @property
    def idle(self) -> bool:
        """True between commands: nothing buffered, no over-long line being
        skipped, no DATA or BDAT content due (the server's whole-command
        deadline runs while this is False)."""
        return self.mode == COMMAND and not self._buf and not self._discarding and not self._events

    # -- mode switches -------------------------------------------------------
    def start_data(self) -> None:
        """Read message content until <CRLF>.<CRLF> (after replying 354)."""
        self.mode = DATA
        self._bol = self._bol_crlf = True
        self._prev_cr = False
        self._long_line = False
        self._partial_len = 0

    def start_chunk(self, size: int) -> None:
        """Read exactly `size` octets of BDAT content (RFC 3030 §2)."""
        self.mode = BDAT
        self._chunk_left = self._chunk_size = size

    # -- events --------------------------------------------------------------
    def next_event(self) -> Event | _NeedData:
        if self._events:
            return self._events.popleft()
        if self.mode == COMMAND:
            return self._next_command()
        if self.mode == DATA:
            self._next_data()
        else:
            self._next_chunk()
        if self._events:
            return self._events.popleft()
        return NEED_DATA

    def _next_command(self) -> Event | _NeedData:
        buf = self._buf
        nl = buf.find(b"\n", 0, self._bound)
        if nl < 0:
            if len(buf) >= self._bound:
                nl = buf.find(b"\n", self._bound)
                if nl >= 0:
                    self._buf = buf[nl + 1 :]
                    return LineTooLong()
                # Discard the rest of this line as it arrives; the event is
                # emitted at its LF so that replies stay in order.
                self._buf = b""
                self._discarding = True
            return NEED_DATA
        line = buf[:nl]
        self._buf = buf[nl + 1 :]
        if line.endswith(b"\r"):
            line = line[:-1]
        return CommandLine(line)

    def _next_data(self) -> None:
        buf = self._buf
        if not buf:
            return
        end = -1
        if self._bol_crlf and buf.startswith(b".\r\n"):
            end, content_end = 0, 0
        elif self._prev_cr and buf.startswith(b"\n.\r\n"):
            end, content_end = 1, 1
        else:
            pos = buf.find(b"\r\n.\r\n")
            if pos >= 0:
                end, content_end = pos + 2, pos + 2
        if end >= 0:
            content = buf[:content_end]
            self._buf = buf[end + 3 :]
            self._emit_content(content)
            self.mode = COMMAND
            self._events.append(DataEnd(self._long_line))
            return
        last_nl = buf.rfind(b"\n")
        tail_start = last_nl + 1
        if last_nl >= 0:
            self._emit_content(buf[:tail_start])
        tail = buf[tail_start:]
        if len(tail) >= TEXT_LINE_LIMIT:
            # A line without end in sight: pass it on rather than buffer it.
            self._emit_content(tail)
            tail = b""
        self._buf = tail

    def _emit_content(self, content: bytes) -> None:
        if not content:
            return
        # Line lengths: the first piece continues a flushed partial line.
        first_nl = content.find(b"\n")
        first_len = (first_nl if first_nl >= 0 else len(content)) + self._partial_len
        if first_len >= TEXT_LINE_LIMIT or (
            len(content) > TEXT_LINE_LIMIT
            and max(map(len, content.split(b"\n"))) >= TEXT_LINE_LIMIT
        ):
            self._long_line = True
        if self._bol:
            out = _STUFFED_DOT.sub(b"\n", b"\n" + content)[1:]
        else:
            out = _STUFFED_DOT.sub(b"\n", content)
        if content.endswith(b"\n"):
            self._bol = True
            self._bol_crlf = content.endswith(b"\r\n") or (len(content) == 1 and self._prev_cr)
            self._partial_len = 0
        else:
            self._bol = self._bol_crlf = False
            last_nl = content.rfind(b"\n")
            self._partial_len = (
                len(content) - last_nl - 1 if last_nl >= 0 else self._partial_len + len(content)
            )
        self._prev_cr = content.endswith(b"\r")
        self._events.append(BodyData(out))

    def _next_chunk(self) -> None:
        if self._chunk_left and self._buf:
            piece = self._buf[: self._chunk_left]
            self._buf = self._buf[len(piece) :]
            self._chunk_left -= len(piece)
            self._events.append(BodyData(piece))
        if self._chunk_left == 0:
            self.mode = COMMAND
            self._events.append(ChunkEnd(self._chunk_size))
