# -*- test-case-name: tests.queue.test_reply -*-
"""Sans-IO pieces of the outbound SMTP client: reply framing.

Nothing here touches a socket.  `ReplyParser.feed(bytes)` returns the
complete replies seen so far and keeps any partial line, bounded in size.
Dot-stuffing of the DATA stream is `xmail.message.dotstuff.DotStuffer`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# RFC 5321 §4.5.3.1.5 limits a reply line to 512 octets; real servers send
# longer ones (banners, EHLO keyword lists), so accept up to this much.
MAX_REPLY_LINE = 4096
MAX_REPLY_LINES = 128


class ReplyProtocolError(Exception):
    """The peer does not speak SMTP replies (RFC 5321 §4.2)."""


# RFC 3463 §2: status-code = class "." subject "." detail
_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")
# RFC 5321 §4.2: Reply-line = *( Reply-code "-" [ textstring ] CRLF )
#                              Reply-code [ SP textstring ] CRLF
_LINE = re.compile(rb"^([2-5][0-9][0-9])([- ]?)(.*)$", re.DOTALL)


@dataclass(frozen=True, slots=True)
class Reply:
    """One complete (possibly multi-line) SMTP reply."""

    code: int
    lines: tuple[str, ...]  # the text after "250-"/"250 ", one per line

    @property
    def enhanced(self) -> str | None:
        """The RFC 3463 status code of the first line, if the server sent one."""
        m = _ENHANCED.match(self.lines[0]) if self.lines else None
        return f"{m.group(1)}.{m.group(2)}.{m.group(3)}" if m else None

    @property
    def text(self) -> str:
        """All lines joined, without the enhanced codes."""
        out = []
        for line in self.lines:
            m = _ENHANCED.match(line)
            out.append(line[m.end():] if m else line)
        return " ".join(part for part in out if part)

    @property
    def positive(self) -> bool:
        return 200 <= self.code < 400

    @property
    def transient(self) -> bool:
        return 400 <= self.code < 500

    @property
    def permanent(self) -> bool:
        return self.code >= 500

    def status(self) -> str:
        """The enhanced status to report in a DSN: the server's, or one
        derived from the reply class (RFC 3463 §3.1 "other or undefined")."""
        return self.enhanced or f"{self.code // 100}.0.0"

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.lines)}".rstrip()


class ReplyParser:
    """Bytes in, `Reply` objects out.

    Lines end in CRLF; a bare LF is tolerated (some servers send it).  A
    multi-line reply must repeat the same code on every line.
    """

    def __init__(self, max_line: int = MAX_REPLY_LINE, max_lines: int = MAX_REPLY_LINES):
        self._buffer = bytearray()
        self._code: int | None = None
        self._lines: list[str] = []
        self._max_line = max_line
        self._max_lines = max_lines

    @property
    def pending(self) -> bool:
        """Bytes (or lines of an unfinished reply) are waiting: a reply
        arriving after STARTTLS's 220 is a response-injection attempt."""
        return bool(self._buffer) or self._code is not None

    def feed(self, data: bytes) -> list[Reply]:
        self._buffer += data
        replies: list[Reply] = []
        while True:
            end = self._buffer.find(b"\n")
            if end < 0:
                if len(self._buffer) > self._max_line:
                    raise ReplyProtocolError("reply line too long")
                return replies
            if end > self._max_line:
                raise ReplyProtocolError("reply line too long")
            line = bytes(self._buffer[:end])
            del self._buffer[: end + 1]
            if line.endswith(b"\r"):
                line = line[:-1]
            reply = self._line(line)
            if reply is not None:
                replies.append(reply)

    def _line(self, line: bytes) -> Reply | None:
        m = _LINE.match(line)
        if m is None or (m.group(2) == b"" and m.group(3)):
            raise ReplyProtocolError(f"not an SMTP reply line: {line[:80]!r}")
        code = int(m.group(1))
        if self._code is not None and code != self._code:
            raise ReplyProtocolError(f"reply code changed inside a multi-line reply: {line[:80]!r}")
        self._code = code
        self._lines.append(m.group(3).decode("utf-8", "replace"))
        if len(self._lines) > self._max_lines:
            raise ReplyProtocolError("reply has too many lines")
        if m.group(2) == b"-":
            return None
        reply = Reply(code, tuple(self._lines))
        self._code = None
        self._lines = []
        return reply


def ehlo_extensions(reply: Reply) -> dict[str, str]:
    """EHLO keywords (upper case) -> their parameters (RFC 5321 §4.1.1.1);
    the first line is the greeting and is skipped."""
    extensions: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        if keyword:
            extensions[keyword.upper()] = params.strip()
    return extensions
