# -*- test-case-name: tests.protocols.test_pop3_parser -*-
"""Sans-IO POP3 command-line parser.

Bytes go in with `receive_data`; `next_event` hands out one event at a time:
a `Command`, a `SaslResponse` (while an AUTH exchange waits for a client
line), a `BadLine`, or `NEED_DATA`.  No I/O, no Twisted.  The buffer is
bounded: a line longer than the limit is reported once as a `BadLine` and its
remainder is skipped up to the next LF, so a client cannot make the server
hold more than `max_line` octets of an unfinished line.
"""

from __future__ import annotations

from dataclasses import dataclass

# RFC 2449 §4: a command line is at most 255 octets including CRLF.  Clients
# in the wild exceed it (long AUTH PLAIN initial responses), so we accept more.
MAX_COMMAND_LINE = 1024
# RFC 5034 §4: SASL client responses are not bound by the command limit.
MAX_SASL_LINE = 16384
# RFC 1939 §3: keywords are 3 or 4 characters; RFC 2449 allows extensions of
# any length, but nothing we implement is longer than 4.
MAX_KEYWORD = 16
MAX_ARGUMENTS = 4


@dataclass(frozen=True, slots=True)
class Command:
    """One command line: the keyword upper-cased and its arguments."""

    keyword: str
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SaslResponse:
    """A client line sent in reply to a "+ " continuation (RFC 5034 §4)."""

    data: bytes


@dataclass(frozen=True, slots=True)
class BadLine:
    """A line that cannot be a command; the session answers -ERR with reason."""

    reason: str


class _NeedData:
    def __repr__(self) -> str:
        return "NEED_DATA"


NEED_DATA = _NeedData()

Event = Command | SaslResponse | BadLine | _NeedData


class CommandParser:
    """Splits the byte stream into command lines."""

    def __init__(self, max_line: int = MAX_COMMAND_LINE, max_sasl_line: int = MAX_SASL_LINE):
        self._buffer = bytearray()
        self._max_line = max_line
        self._max_sasl_line = max_sasl_line
        self._skipping = False  # inside the tail of an over-long line
        self._sasl = False

    @property
    def buffered(self) -> int:
        """Octets received but not yet handed out (for read back-pressure)."""
        return len(self._buffer)

    @property
    def idle(self) -> bool:
        """True between commands: no partial line, no over-long line being
        skipped (the server's whole-command deadline runs otherwise)."""
        return not self._buffer and not self._skipping

    def receive_data(self, data: bytes) -> None:
        self._buffer += data

    def expect_sasl_response(self, expecting: bool = True) -> None:
        """The next line is a SASL response, not a command (RFC 5034 §4)."""
        self._sasl = expecting

    def discard_buffer(self) -> None:
        """Forget everything received so far.  RFC 2595 §4, cf. RFC 3207
        §4.2: data pipelined after STLS was sent in plaintext and must not be
        acted upon once TLS is up."""
        self._buffer.clear()
        self._skipping = False

    def next_event(self) -> Event:
        limit = self._max_sasl_line if self._sasl else self._max_line
        while True:
            if self._skipping:
                end = self._buffer.find(b"\n")
                if end < 0:
                    self._buffer.clear()
                    return NEED_DATA
                del self._buffer[: end + 1]
                self._skipping = False
                continue
            # limit counts the whole line, CRLF included.
            end = self._buffer.find(b"\n", 0, limit)
            if end < 0:
                if len(self._buffer) >= limit:
                    # Too long: report now, skip the rest of it (as it arrives).
                    tail = self._buffer.find(b"\n", limit)
                    if tail < 0:
                        self._buffer.clear()
                        self._skipping = True
                    else:
                        del self._buffer[: tail + 1]
                    self._sasl = False
                    return BadLine("line too long")
                return NEED_DATA
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            if self._sasl:
                self._sasl = False
                return SaslResponse(line.strip(b" \t"))
            return parse_command(line)


def parse_command(line: bytes) -> Command | BadLine:
    """One line without its line ending -> Command or BadLine.

    RFC 1939 §3: a case-insensitive keyword, then arguments separated by a
    single space.  We accept any run of spaces/tabs as a separator.
    """
    if b"\0" in line:
        return BadLine("NUL in command line")
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        # RFC 2449 §4 arguments are printable ASCII; UTF-8 passwords still
        # arrive through AUTH PLAIN, which is base64.
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            return BadLine("command line is not ASCII or UTF-8")
    parts = text.split()
    if not parts:
        return BadLine("empty command")
    keyword = parts[0]
    if len(keyword) > MAX_KEYWORD or not keyword.isascii() or not keyword.isalpha():
        return BadLine("unknown command")
    args = parts[1:]
    if keyword.upper() == "PASS":
        # RFC 1939 §7: the PASS argument may contain spaces; keep the rest of
        # the line as it was sent.
        rest = text.lstrip()[len(keyword):]
        if rest[:1] in (" ", "\t"):
            rest = rest[1:]
        return Command("PASS", (rest,) if rest else ())
    if len(args) > MAX_ARGUMENTS:
        return BadLine("too many arguments")
    return Command(keyword.upper(), tuple(args))
