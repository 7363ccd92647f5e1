"""Helpers (no tests here): a raw SMTP client for acceptance tests that smtplib cannot express
(pipelining in one packet, BDAT, injected bytes, bare line endings)."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any


class Wire:
    def __init__(self, port: int, host: str = "127.0.0.1", *, source: str | None = None,
                 implicit_tls: bool = False, timeout: float = 20.0):
        self.sock: Any = socket.create_connection((host, port), timeout=timeout,
                                                  source_address=(source, 0) if source else None)
        if implicit_tls:
            self.sock = _client_tls().wrap_socket(self.sock)
        self.buf = b""
        self.greeting = self.reply()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        while b"\r\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError(f"connection closed; buffered {self.buf!r}")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def reply(self) -> str:
        """One complete (possibly multi-line) reply as text, lines joined by \\n."""
        lines = []
        while True:
            line = self.line()
            lines.append(line.decode("utf-8", "replace"))
            if line[3:4] != b"-":
                return "\n".join(lines)

    def replies(self, n: int) -> list[str]:
        return [self.reply() for _ in range(n)]

    def cmd(self, line: str | bytes) -> str:
        self.send((line.encode() if isinstance(line, str) else line) + b"\r\n")
        return self.reply()

    def starttls(self) -> None:
        self.sock = _client_tls().wrap_socket(self.sock)

    def closed_by_server(self, wait: float = 5.0) -> bool:
        self.sock.settimeout(wait)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                if not self.sock.recv(65536):
                    return True
            except (ConnectionError, ssl.SSLError):
                return True
        return False

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


def _client_tls() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def client_tls() -> ssl.SSLContext:
    return _client_tls()


def inbox(server: Any, address: str, folder: str = "INBOX") -> list[bytes]:
    """Every message in a folder, read from the store's files."""
    mailbox = server.mailbox(address)
    box = server.call(mailbox.folder, folder)
    out = []
    for record in box.records():
        with box.open_message(record.uid) as f:
            out.append(f.read())
    return out


def folder_records(server: Any, address: str, folder: str) -> list[Any]:
    mailbox = server.mailbox(address)
    return server.call(mailbox.folder, folder).records()
