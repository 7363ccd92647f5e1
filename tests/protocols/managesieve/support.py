"""A raw ManageSieve client over a real socket (RFC 5804 §4 responses)."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass, field

from tests.support.clients import LineClient
from tests.support.server import PASSWORD

ALICE = "alice@example.com"
_STATUS = re.compile(rb'^(OK|NO|BYE)(?: \(([^)]*(?:"[^"]*")?)\))?(?: (.*))?\r\n\Z', re.S)
_LITERAL_END = re.compile(rb"\{(\d+)\}\r\n\Z")


@dataclass
class Reply:
    """One response: the data lines (literals inlined), then OK/NO/BYE."""

    status: str
    code: str | None
    text: str
    lines: list[bytes] = field(default_factory=list)

    def __repr__(self) -> str:
        return f"<{self.status} ({self.code}) {self.text!r} +{len(self.lines)} lines>"


def unquote(token: bytes) -> str:
    assert token.startswith(b'"') and token.endswith(b'"'), token
    return re.sub(rb"\\(.)", rb"\1", token[1:-1]).decode()


class SieveClient(LineClient):
    """Commands as raw bytes, replies parsed."""

    def logical_line(self) -> bytes:
        """A line with any literal it ends in read and inlined."""
        line = self.line()
        if not line:
            raise ConnectionError("server closed the connection")
        m = _LITERAL_END.search(line)
        while m:
            data = self.read_exact(int(m.group(1)))
            rest = self.line()
            line = line[: m.start()] + b"{literal}" + data + rest
            m = _LITERAL_END.search(rest)
        return line

    def reply(self) -> Reply:
        lines = []
        while True:
            line = self.logical_line()
            m = _STATUS.match(line)
            if m:
                text = m.group(3) or b""
                if text.startswith(b'"'):
                    text = unquote(text).encode()
                elif text.startswith(b"{literal}"):
                    text = text[len(b"{literal}"):-2]
                code = m.group(2).decode() if m.group(2) else None
                return Reply(m.group(1).decode(), code, text.decode(), lines)
            lines.append(line)

    def cmd(self, data: bytes | str) -> Reply:
        self.send((data.encode() if isinstance(data, str) else data) + b"\r\n")
        return self.reply()

    def login(self, user: str = ALICE, password: str = PASSWORD) -> Reply:
        token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
        return self.cmd(f'AUTHENTICATE "PLAIN" "{token}"')

    def put(self, name: str, script: bytes) -> Reply:
        return self.cmd(b'PUTSCRIPT "%s" {%d+}\r\n' % (name.encode(), len(script)) + script)


def capabilities(reply: Reply) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for line in reply.lines:
        tokens = re.findall(rb'"(?:[^"\\]|\\.)*"', line)
        out[unquote(tokens[0])] = unquote(tokens[1]) if len(tokens) > 1 else None
    return out
