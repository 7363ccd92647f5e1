# -*- test-case-name: tests.queue.test_runner -*-
"""A scripted SMTP peer on a real loopback socket, for the queue's tests.

It answers like a plain ESMTP server, with hooks deciding the reply to each
RCPT and to the end of DATA, and records what it received: enough to play a
greylisting server, a server that rejects a user, or a smarthost that wants
TLS and AUTH.  It runs on the shared reactor thread of tests/conftest.py.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import protocol
from twisted.protocols.basic import LineReceiver


@dataclass
class Transaction:
    mail_from: str
    mail_params: str
    recipients: list[str] = field(default_factory=list)
    rcpt_params: list[str] = field(default_factory=list)
    data: bytes = b""
    tls: bool = False
    authenticated: str | None = None
    connection: int = 0


def _address(arg: str) -> tuple[str, str]:
    start, end = arg.find("<"), arg.find(">")
    return arg[start + 1 : end], arg[end + 1 :].strip()


class FakeSMTPProtocol(LineReceiver):
    delimiter = b"\r\n"
    MAX_LENGTH = 1 << 20

    def connectionMade(self) -> None:
        peer = self.factory.peer
        peer.connections += 1
        peer.current += 1
        peer.max_concurrent = max(peer.max_concurrent, peer.current)
        self.number = peer.connections
        self.tls = False
        self.user: str | None = None
        self.txn: Transaction | None = None
        self.data_lines: list[bytes] | None = None
        self.auth_step: list[str] | None = None
        self.reply(peer.greeting)

    def connectionLost(self, reason: Any = None) -> None:
        self.factory.peer.current -= 1

    def reply(self, line: bytes) -> None:
        self.transport.write(line + b"\r\n")

    def lineReceived(self, line: bytes) -> None:
        peer = self.factory.peer
        if self.data_lines is not None:
            if line == b".":
                txn, self.txn = self.txn, None
                txn.data = b"".join(x + b"\r\n" for x in self.data_lines)
                self.data_lines = None
                answer = peer.on_data(txn)
                if answer.startswith(b"250"):
                    peer.transactions.append(txn)
                self.reply(answer)
            else:
                # RFC 5321 §4.5.2: remove one leading dot.
                self.data_lines.append(line[1:] if line.startswith(b".") else line)
            return
        peer.commands.append(line)
        if self.auth_step is not None:
            self._auth_continue(line)
            return
        verb, _, arg = line.decode("utf-8", "replace").partition(" ")
        verb = verb.upper()
        if verb == "EHLO":
            ext = list(peer.extensions)
            if peer.starttls is not None and not self.tls:
                ext.append("STARTTLS")
            if peer.auth and (self.tls or peer.starttls is None):
                ext.append("AUTH " + peer.auth_mechanisms)
            lines = [f"fake.test greets {arg}"] + ext
            for item in lines[:-1]:
                self.reply(b"250-" + item.encode())
            self.reply(b"250 " + lines[-1].encode())
        elif verb == "HELO":
            self.reply(b"250 fake.test")
        elif verb == "STARTTLS" and peer.starttls is not None and not self.tls:
            self.reply(b"220 2.0.0 go ahead")
            if peer.starttls == "broken":
                # A middlebox that answers the ClientHello with an alert.
                self.setRawMode()
                return
            self.transport.startTLS(peer.starttls)
            self.tls = True
            self.txn = None
        elif verb == "AUTH" and peer.auth:
            mech, _, initial = arg.partition(" ")
            if mech.upper() == "PLAIN" and initial:
                self._check_plain(initial)
            elif mech.upper() == "LOGIN":
                self.auth_step = []
                self.reply(b"334 VXNlcm5hbWU6")
            else:
                self.reply(b"504 5.5.4 unsupported")
        elif verb == "MAIL":
            if peer.auth and self.user is None:
                self.reply(b"530 5.7.0 authentication required")
                return
            address, params = _address(arg)
            self.txn = Transaction(address, params, tls=self.tls, authenticated=self.user,
                                   connection=self.number)
            self.reply(peer.on_mail(address))
        elif verb == "RCPT":
            if self.txn is None:
                self.reply(b"503 5.5.1 MAIL first")
                return
            address, params = _address(arg)
            answer = peer.on_rcpt(address)
            if answer.startswith(b"25"):
                self.txn.recipients.append(address)
                self.txn.rcpt_params.append(params)
            self.reply(answer)
        elif verb == "DATA":
            if self.txn is None or not self.txn.recipients:
                self.reply(b"554 5.5.1 no valid recipients")
                return
            self.data_lines = []
            self.reply(b"354 go ahead")
        elif verb == "RSET":
            self.txn = None
            self.reply(b"250 2.0.0 reset")
        elif verb == "NOOP":
            self.reply(b"250 2.0.0 ok")
        elif verb == "QUIT":
            self.reply(b"221 2.0.0 bye")
            self.transport.loseConnection()
        else:
            self.reply(b"502 5.5.2 unknown command")

    def rawDataReceived(self, data: bytes) -> None:
        self.transport.write(b"\x15\x03\x03\x00\x02\x02\x28")
        self.transport.loseConnection()

    def _check_plain(self, token: str) -> None:
        try:
            _authz, user, password = base64.b64decode(token).decode().split("\0")
        except Exception:
            self.reply(b"501 5.5.2 bad token")
            return
        self._login(user, password)

    def _auth_continue(self, line: bytes) -> None:
        assert self.auth_step is not None
        self.auth_step.append(base64.b64decode(line).decode())
        if len(self.auth_step) == 1:
            self.reply(b"334 UGFzc3dvcmQ6")
            return
        user, password = self.auth_step
        self.auth_step = None
        self._login(user, password)

    def _login(self, user: str, password: str) -> None:
        if self.factory.peer.auth == (user, password):
            self.user = user
            self.reply(b"235 2.7.0 ok")
        else:
            self.reply(b"535 5.7.8 bad credentials")


class FakeSMTPPeer:
    """Start with `listen(reactor)` on the reactor thread; `port` then holds the port."""

    def __init__(self, *, extensions: tuple[str, ...] = ("PIPELINING", "8BITMIME", "SIZE 100000000",
                                                          "DSN", "ENHANCEDSTATUSCODES"),
                 starttls: Any = None, auth: tuple[str, str] | None = None,
                 greeting: bytes = b"220 fake.test ESMTP"):
        self.extensions = extensions
        self.starttls = starttls  # a server context factory to offer STARTTLS, or "broken"
        self.auth = auth  # (user, password) to require AUTH
        self.auth_mechanisms = "PLAIN LOGIN"
        self.greeting = greeting
        self.transactions: list[Transaction] = []
        self.commands: list[bytes] = []
        self.connections = 0
        self.current = 0
        self.max_concurrent = 0
        self.on_mail: Callable[[str], bytes] = lambda address: b"250 2.1.0 ok"
        self.on_rcpt: Callable[[str], bytes] = lambda address: b"250 2.1.5 ok"
        self.on_data: Callable[[Transaction], bytes] = lambda txn: b"250 2.0.0 accepted"
        self.listening: Any = None

    def listen(self, reactor: Any, port: int = 0) -> int:
        factory = protocol.Factory.forProtocol(FakeSMTPProtocol)
        factory.peer = self
        self.listening = reactor.listenTCP(port, factory, interface="127.0.0.1")
        return self.listening.getHost().port

    @property
    def port(self) -> int:
        return self.listening.getHost().port

    def stop(self) -> Any:
        return self.listening.stopListening()
