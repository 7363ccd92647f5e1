"""Messages, transactions and misbehaving servers for the scanner tests."""

from __future__ import annotations

import base64
import os
from typing import Any

from twisted.internet import protocol

from tests.support.scanners import EICAR
from tests.support.server import in_reactor, reactor_running
from xmail.filter.interfaces import MX, Recipient, Transaction


def message(subject: str = "Lunch", body: str = "", attachment: bytes | None = None) -> bytes:
    body = body or ("Shall we meet for lunch on Thursday at the usual place near the "
                    "station? Bring the quarterly figures if you have them ready.\r\n")
    head = (f"From: Alice <alice@example.net>\r\nTo: bob@example.com\r\nSubject: {subject}\r\n"
            f"Message-ID: <{os.urandom(6).hex()}@example.net>\r\nDate: Sun, 06 Dec 2026 03:00:00 +0000\r\n"
            "MIME-Version: 1.0\r\n")
    if attachment is None:
        return (head + "Content-Type: text/plain; charset=us-ascii\r\n\r\n" + body).encode()
    encoded = base64.encodebytes(attachment).decode().replace("\n", "\r\n")
    return (head + 'Content-Type: multipart/mixed; boundary="b1"\r\n\r\n--b1\r\n'
            "Content-Type: text/plain\r\n\r\n" + body + "\r\n--b1\r\n"
            'Content-Type: application/octet-stream; name="file.com"\r\n'
            "Content-Transfer-Encoding: base64\r\n"
            'Content-Disposition: attachment; filename="file.com"\r\n\r\n'
            + encoded + "--b1--\r\n").encode()


def eicar_message() -> bytes:
    return message("Invoice", attachment=EICAR)


def spool(tmp_path: Any, data: bytes, name: str = "spool") -> str:
    path = os.path.join(str(tmp_path), f"{name}-{os.urandom(4).hex()}.eml")
    with open(path, "wb") as f:
        f.write(data)
    return path


def transaction(source: bytes | str, mode: str = MX, **kw: Any) -> Transaction:
    values: dict[str, Any] = dict(
        mode=mode, id="Q" + os.urandom(4).hex(), client_ip="192.0.2.1", helo="mx.example.net",
        mail_from="alice@example.net",
        recipients=(Recipient("bob@example.com", "bob@example.com"),),
        user=None, header_section=b"",
        size=len(source) if isinstance(source, bytes) else os.path.getsize(source),
        hostname="mail.example.com", source=lambda: source)
    values.update(kw)
    return Transaction(**values)


class Misbehaving(protocol.Protocol):
    """A scanner that is no scanner: answers `reply` (once it has seen
    `after` octets, or data ending with `until`) and then closes, or keeps
    quiet (`reply` None)."""

    def __init__(self, reply: bytes | None, after: int, close: bool, until: bytes = b""):
        self.reply, self.after, self.close, self.until = reply, after, close, until
        self.seen = 0
        self.tail = b""

    def dataReceived(self, data: bytes) -> None:
        self.seen += len(data)
        self.tail = (self.tail + data)[-max(len(self.until), 1):]
        if self.until and not self.tail.endswith(self.until):
            return
        if self.reply is not None and self.seen >= self.after:
            self.transport.write(self.reply)
            self.reply = None
            if self.close:
                self.transport.loseConnection()


class MisbehavingServer:
    """A real listening socket on loopback; `stop()` closes it."""

    def __init__(self, reply: bytes | None, after: int = 1, close: bool = True, until: bytes = b""):
        factory = protocol.Factory.forProtocol(lambda: Misbehaving(reply, after, close, until))
        self.connections: list[Any] = []
        original = factory.buildProtocol

        def build(addr: Any) -> Any:
            p = original(addr)
            self.connections.append(p)
            return p

        factory.buildProtocol = build  # type: ignore[method-assign]
        reactor = reactor_running()
        self.listening = in_reactor(reactor.listenTCP, 0, factory, interface="127.0.0.1")
        self.port = self.listening.getHost().port

    def stop(self) -> None:
        def close() -> Any:
            for p in self.connections:
                if p.transport is not None:
                    p.transport.abortConnection()
            return self.listening.stopListening()

        in_reactor(close)


def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
