"""A tiny raw IMAP client for transcript-style tests (one exchange, the
expected tagged status, the untagged lines), plus message samples."""

from __future__ import annotations

import re
import socket
import ssl
from typing import Any

from tests.conftest import PASSWORD

_LITERAL_AT_END = re.compile(rb"\{(\d+)\}\r\n\Z")


def message(subject: str = "hello", body: str = "hi there\r\n", sender: str = "bob@example.com",
            to: str = "alice@example.com", extra: str = "") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\nMessage-ID: <{abs(hash(subject + body))}@x>\r\n"
            f"{extra}\r\n{body}").encode()


class Wire:
    """Line-level IMAP client over a real socket."""

    def __init__(self, port: int, *, source: str | None = None, tls: bool = False, timeout: float = 10):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout,
                                             source_address=(source, 0) if source else None)
        if tls:
            self.sock = _client_tls().wrap_socket(self.sock)
        self.buf = b""
        self.counter = 0
        self.greeting = self.line()

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self) -> Wire:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def starttls(self) -> None:
        self.sock = _client_tls().wrap_socket(self.sock)

    def _fill(self) -> None:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.buf += chunk

    def line(self) -> bytes:
        """One response line, literals inlined (so a FETCH with a body is one item)."""
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


def _client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def deliver(server: Any, address: str, data: bytes, folder: str = "INBOX", flags: tuple[str, ...] = ()
            ) -> Any:
    """Local delivery through the running store (what SMTP and the queue do)."""
    return server.call(server.ctx.store.deliver, address, data, folder, flags)
