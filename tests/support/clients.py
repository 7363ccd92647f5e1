"""One raw client per protocol, over a real loopback socket.

What smtplib, poplib and imaplib hide -- exact line endings, dot-stuffing,
pipelining, hostile bytes -- is tested with these:

- `LineClient`: a socket that reads CRLF lines (endings kept) and exact
  byte counts; the base of the other two line clients.
- `smtp_reply`: whole SMTP replies off a LineClient, syntax checked
  (RFC 5321 §4.2); `SmtpClient`: commands and text replies.
- `pop3_status`, `pop3_multiline` / `Pop3Client`: POP3 status lines and
  multi-line responses (RFC 1939 §3).
- `ImapClient`: tagged IMAP exchanges, literals inlined (RFC 3501 §7).
"""

from __future__ import annotations

import re
import socket
import ssl
import time
from typing import Any

from tests.support.server import PASSWORD


def client_tls() -> ssl.SSLContext:
    """A client context that trusts the test server's self-signed certificate."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


class LineClient:
    """A plain socket that reads CRLF lines (keeps the line endings)."""

    def __init__(self, port: int, timeout: float = 10.0, *, source: str | None = None, tls: bool = False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        if tls:
            self.sock = client_tls().wrap_socket(self.sock)
        self.buf = b""

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def starttls(self) -> None:
        self.sock = client_tls().wrap_socket(self.sock)

    def line(self) -> bytes:
        """One line with its ending; b"" when the server closed."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def closed(self, timeout: float = 2.0) -> bool:
        """True when the server has closed (reads EOF within timeout)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except TimeoutError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


# -- SMTP -------------------------------------------------------------------------------------------

SMTP_REPLY_LINE = re.compile(rb"^[2-5]\d\d([ -])[\x20-\x7e]*\r\n\Z|^[2-5]\d\d\r\n\Z")


def smtp_reply(client: LineClient) -> tuple[int, list[bytes]] | None:
    """One whole (possibly multi-line) SMTP reply, syntax checked
    (RFC 5321 §4.2: Reply-code [ SP textstring ] CRLF, continuation lines
    with "-", the same code on every line); None if the server closed."""
    lines: list[bytes] = []
    code = None
    while True:
        line = client.line()
        if not line:
            assert not lines, f"connection closed inside a multi-line reply {lines!r}"
            return None
        assert SMTP_REPLY_LINE.match(line), f"malformed SMTP reply line {line!r}"
        if code is None:
            code = line[:3]
        assert line[:3] == code, f"reply code changed inside a reply: {lines + [line]!r}"
        lines.append(line)
        if len(line) == 5 or line[3:4] == b" ":
            return int(code), lines


class SmtpClient(LineClient):
    """Raw SMTP for what smtplib cannot express (pipelining in one packet,
    BDAT, injected bytes, bare line endings).  Replies are text, the lines
    of a multi-line reply joined by "\\n"; the greeting is read."""

    def __init__(self, port: int, host: str = "127.0.0.1", *, source: str | None = None,
                 implicit_tls: bool = False, timeout: float = 20.0):
        self.sock: Any = socket.create_connection((host, port), timeout=timeout,
                                                  source_address=(source, 0) if source else None)
        if implicit_tls:
            self.sock = client_tls().wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.reply()

    def line(self) -> bytes:
        """One line without its CRLF; ConnectionError when the server closed."""
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; buffered {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> str:
        """One complete (possibly multi-line) reply (RFC 5321 §4.2.1)."""
        lines = []
        while True:
            line = self.line()
            lines.append(line.decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return "\n".join(lines)

    def replies(self, n: int) -> list[str]:
        return [self.reply() for _ in range(n)]

    def cmd(self, line: str | bytes) -> str:
        """Send one command line (CRLF added) and read its reply."""
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def closed_by_server(self, wait: float = 5.0) -> bool:
        """True when the server closes within `wait` s (data before it is dropped)."""
        self.sock.settimeout(wait)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(65536):
                    return True
            except (ConnectionError, ssl.SSLError):
                return True
            except TimeoutError:
                return False
        return False


# -- POP3 -------------------------------------------------------------------------------------------

POP3_STATUS = re.compile(rb"^(\+OK|-ERR)([ ][\x20-\x7e]*)?\r\n\Z")
POP3_CONTINUATION = re.compile(rb"^\+ [\x20-\x7e]*\r\n\Z|^\+\r\n\Z")


def pop3_status(client: LineClient, allow_continuation: bool = False) -> bytes | None:
    """One POP3 status line (RFC 1939 §3), syntax checked; None if closed."""
    line = client.line()
    if not line:
        return None
    if allow_continuation and POP3_CONTINUATION.match(line):
        return line
    assert POP3_STATUS.match(line), f"malformed POP3 status line {line!r}"
    return line


def pop3_multiline(client: LineClient) -> list[bytes]:
    """The body of a multi-line response up to the "." line."""
    lines = []
    while True:
        line = client.line()
        assert line.endswith(b"\r\n"), f"POP3 line without CRLF {line!r}"
        if line == b".\r\n":
            return lines
        lines.append(line)


class Pop3Client(LineClient):
    """Exact POP3 wire bytes: what poplib hides (dot-stuffing, line endings).
    Lines are returned without their CRLF; the greeting must be +OK."""

    def __init__(self, port: int, timeout: float = 30.0, **kw: Any):
        super().__init__(port, timeout, **kw)
        self.greeting = self.status()
        assert self.greeting.startswith(b"+OK"), self.greeting

    def status(self) -> bytes:
        while b"\r\n" not in self.buf:
            self._fill()
        line, _, self.buf = self.buf.partition(b"\r\n")
        return line

    def cmd(self, command: str) -> bytes:
        self.send(command.encode() + b"\r\n")
        return self.status()

    def multiline(self, command: str) -> tuple[bytes, bytes]:
        """(status line, body up to and including the terminating ".\\r\\n")."""
        status = self.cmd(command)
        assert status.startswith(b"+OK"), status
        # The terminator is the first "." line: stuffing guarantees it (RFC 1939 §3).
        while True:
            if self.buf.startswith(b".\r\n"):
                end = 0
                break
            end = self.buf.find(b"\r\n.\r\n")
            if end >= 0:
                end += 2
                break
            self._fill()
        body, self.buf = self.buf[:end + 3], self.buf[end + 3:]
        return status, body


# -- IMAP -------------------------------------------------------------------------------------------

_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n\Z")


class ImapClient(LineClient):
    """Line-level IMAP client for transcript-style tests: one exchange, the
    expected tagged status, the untagged lines.  The greeting is read."""

    def __init__(self, port: int, *, source: str | None = None, tls: bool = False, timeout: float = 10):
        super().__init__(port, timeout, source=source, tls=tls)
        self.counter = 0
        self.greeting = self.line()

    def __enter__(self) -> ImapClient:
        return self

    def line(self) -> bytes:
        """One response line without CRLF, literals inlined (so a FETCH with
        a body is one item; RFC 3501 §4.3)."""
        out = b""
        while True:
            while b"\r\n" not in self.buf:
                self._fill()
            i = self.buf.index(b"\r\n") + 2
            part, self.buf = self.buf[:i], self.buf[i:]
            out += part
            m = _LITERAL_AT_END.search(part)
            if m is None:
                return out[:-2]
            n = int(m.group(1))
            while len(self.buf) < n:
                self._fill()
            out += self.buf[:n]
            self.buf = self.buf[n:]

    def tag(self) -> bytes:
        self.counter += 1
        return b"t%d" % self.counter

    def transact(self, command: str | bytes) -> tuple[bytes, list[bytes]]:
        """Send a command, read to its tagged reply: (tagged line, untagged lines)."""
        if isinstance(command, str):
            command = command.encode()
        tag = self.tag()
        self.send(tag + b" " + command + b"\r\n")
        return self.until(tag)

    def until(self, tag: bytes) -> tuple[bytes, list[bytes]]:
        untagged = []
        while True:
            line = self.line()
            if line.startswith(tag + b" "):
                return line[len(tag) + 1 :], untagged
            untagged.append(line)

    def ok(self, command: str | bytes) -> list[bytes]:
        status, untagged = self.transact(command)
        assert status.startswith(b"OK"), (command, status, untagged)
        return untagged

    def expect(self, status: str, command: str | bytes) -> tuple[bytes, list[bytes]]:
        tagged, untagged = self.transact(command)
        assert tagged.startswith(status.encode()), (command, tagged, untagged)
        return tagged, untagged

    def login(self, user: str = "alice@example.com") -> None:
        self.ok(f'LOGIN "{user}" "{PASSWORD}"')
