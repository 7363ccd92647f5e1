# -*- test-case-name: tests.queue.test_client -*-
"""The outbound ESMTP client: a thin Twisted protocol and a session driver.

`SMTPClientProtocol` only frames: lines out, `Reply` objects in (through the
sans-IO `ReplyParser`), one Deferred per expected reply, in order, which is
what PIPELINING (RFC 2920) needs.  `ESMTPSession` drives one connection:
greeting, EHLO, opportunistic STARTTLS, optional AUTH, then any number of
mail transactions (one connection reused for several messages), then QUIT.

We do not use twisted.mail.smtp's client: it cannot send DSN parameters
(NOTIFY/ORCPT/RET/ENVID) or SMTPUTF8, never pipelines, and hands back
per-recipient results only through callbacks tied to one message.
"""

from __future__ import annotations

import base64
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, endpoints, protocol
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.protocols.basic import FileSender
from twisted.python.failure import Failure

from xmail.message.dotstuff import DotStuffer
from xmail.queue.reply import Reply, ReplyParser, ReplyProtocolError, ehlo_extensions

# RFC 5321 §4.5.3.2: minimum client timeouts.
GREETING_TIMEOUT = 300.0
COMMAND_TIMEOUT = 300.0
DATA_BLOCK_TIMEOUT = 180.0
DATA_END_TIMEOUT = 600.0
CONNECT_TIMEOUT = 30.0
SMALL_MESSAGE = 256 * 1024  # read and sent in one go; larger ones stream
QUIT_TIMEOUT = 10.0
# RFC 5321 §4.5.3.1.8: a server must accept at least 100 recipients.
MAX_RECIPIENTS_PER_TRANSACTION = 100


class SMTPTimeout(Exception):
    """The server did not answer in time."""


class ConnectionClosed(Exception):
    """The connection ended while replies were still expected."""


class SessionError(Exception):
    """The session cannot carry mail; `temporary` says whether to retry."""

    def __init__(self, message: str, *, temporary: bool = True, status: str = "4.4.2",
                 reply: Reply | None = None):
        super().__init__(message)
        self.temporary = temporary
        self.status = status
        self.reply = reply


class SMTPClientProtocol(protocol.Protocol):
    """Lines out, replies in; one Deferred per reply, fired in order."""

    _log = Logger()

    def __init__(self, reactor: IReactorTime):
        self.reactor = reactor
        self.parser = ReplyParser()
        self.greeting: defer.Deferred[Reply] = defer.Deferred()
        self._waiting: deque[defer.Deferred[Reply]] = deque([self.greeting])
        self._unread_replies = 0
        self._timer: Any = None
        self._timeout = GREETING_TIMEOUT
        self._closed = False
        self.lost: defer.Deferred[None] = defer.Deferred()

    # -- twisted callbacks ---------------------------------------------------
    def connectionMade(self) -> None:
        # Commands are small and answered one round trip at a time: without
        # TCP_NODELAY, Nagle plus delayed ACKs cost ~40 ms per exchange.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:
                pass
        self._arm(GREETING_TIMEOUT)

    def dataReceived(self, data: bytes) -> None:
        try:
            replies = self.parser.feed(data)
        except ReplyProtocolError as e:
            self._abort(e)
            return
        for i, reply in enumerate(replies):
            if not self._waiting:
                self._abort(ReplyProtocolError(f"unexpected reply: {reply}"))
                return
            self._unread_replies = len(replies) - i - 1
            d = self._waiting.popleft()
            if self._waiting:
                self._arm(self._timeout)
            else:
                self._disarm()
            d.callback(reply)
            if self._closed:
                return
        self._unread_replies = 0

    def connectionLost(self, reason: Failure = protocol.connectionDone) -> None:
        self._closed = True
        self._disarm()
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(Failure(ConnectionClosed(reason.getErrorMessage())))
        self.lost.callback(None)

    # -- what the session uses -------------------------------------------------
    @property
    def closed(self) -> bool:
        return self._closed

    def send(self, line: bytes, timeout: float = COMMAND_TIMEOUT) -> defer.Deferred[Reply]:
        """Write one command line; the Deferred fires with its reply."""
        if self._closed:
            return defer.fail(ConnectionClosed("connection already closed"))
        d: defer.Deferred[Reply] = defer.Deferred()
        self._waiting.append(d)
        self._timeout = timeout
        self._arm(timeout)
        self.transport.write(line + b"\r\n")
        return d

    def send_message(self, path: str) -> defer.Deferred[Reply]:
        """After 354: stream the file dot-stuffed, then the terminator; the
        Deferred fires with the final reply (RFC 5321 §4.1.1.4)."""
        d: defer.Deferred[Reply] = defer.Deferred()
        self._waiting.append(d)
        self._timeout = DATA_END_TIMEOUT
        stuffer = DotStuffer()
        f = open(path, "rb")  # noqa: SIM115 - closed when the transfer ends
        head = f.read(SMALL_MESSAGE + 1)
        if len(head) <= SMALL_MESSAGE:
            # Small messages (most) go out in one write with the terminator.
            f.close()
            self._arm(DATA_END_TIMEOUT)
            self.transport.write(stuffer.feed(head) + stuffer.finish())
            return d
        f.seek(0)

        def transform(chunk: bytes) -> bytes:
            # Each chunk leaving is progress: the data-block timer restarts.
            self._arm(DATA_BLOCK_TIMEOUT)
            return stuffer.feed(chunk)

        def sent(_: Any) -> None:
            f.close()
            if not self._closed:
                self._arm(DATA_END_TIMEOUT)
                self.transport.write(stuffer.finish())

        def failed(reason: Failure) -> None:
            f.close()

        self._arm(DATA_BLOCK_TIMEOUT)
        FileSender().beginFileTransfer(f, self.transport, transform).addCallbacks(sent, failed)
        return d

    def start_tls(self, context_factory: Any) -> None:
        # RFC 3207 §4.2 (and the client side of CVE-2011-0411): anything the
        # server sent after its 220 arrived in plaintext and could have been
        # injected by an attacker; refuse to go on rather than trust it.
        if self.parser.pending or self._unread_replies:
            raise ReplyProtocolError("plaintext data after the STARTTLS reply")
        self.transport.startTLS(context_factory)

    def close(self) -> None:
        if not self._closed:
            self.transport.loseConnection()

    # -- timers ------------------------------------------------------------------
    def _arm(self, timeout: float) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.reset(timeout)
        else:
            self._timer = self.reactor.callLater(timeout, self._timed_out)

    def _disarm(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None

    def _timed_out(self) -> None:
        self._timer = None
        self._abort(SMTPTimeout("timed out waiting for the server"))

    def _abort(self, error: Exception) -> None:
        self._log.info("outbound SMTP connection aborted: {error}", error=error)
        self._closed = True
        self._disarm()
        waiting, self._waiting = self._waiting, deque()
        for d in waiting:
            d.errback(Failure(error))
        if self.transport is not None:
            self.transport.abortConnection()


class ClientFactory(protocol.Factory):
    noisy = False  # one per outbound connection: no "Starting factory" log lines

    def __init__(self, reactor: Any):
        self.reactor = reactor

    def buildProtocol(self, addr: Any) -> SMTPClientProtocol:
        p = SMTPClientProtocol(self.reactor)
        p.factory = self
        return p


def connect(reactor: Any, host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> defer.Deferred[Any]:
    """-> Deferred[SMTPClientProtocol]; A/AAAA are tried by HostnameEndpoint."""
    endpoint = endpoints.HostnameEndpoint(reactor, host, port, timeout=timeout)
    return endpoint.connect(ClientFactory(reactor))


# --- sessions -----------------------------------------------------------------


@dataclass(frozen=True)
class OutboundRecipient:
    address: str
    notify: tuple[str, ...] = ()
    orcpt: str | None = None


@dataclass(frozen=True)
class Envelope:
    """One mail transaction to send."""

    mail_from: str
    recipients: tuple[OutboundRecipient, ...]
    path: str
    size: int
    envid: str | None = None
    ret: str | None = None


@dataclass(frozen=True)
class Outcome:
    """What happened to one recipient in one attempt."""

    kind: str  # "sent", "temporary", "permanent"
    status: str  # RFC 3463
    diagnostic: str  # the reply as the server sent it, or our own explanation
    remote_mta: str = ""
    # The next hop takes no DSN parameters: a NOTIFY=SUCCESS recipient gets a
    # "relayed" DSN from us (RFC 3461 §4.1).
    relayed_without_dsn: bool = False


@dataclass
class Credentials:
    username: str
    password: str


def xtext(value: str) -> str:
    """RFC 3461 §4: "+", "=", controls and non-ASCII as "+XX"."""
    out = []
    for byte in value.encode("utf-8"):
        if 33 <= byte <= 126 and byte not in (ord("+"), ord("=")):
            out.append(chr(byte))
        else:
            out.append(f"+{byte:02X}")
    return "".join(out)


@dataclass(eq=False)
class ESMTPSession:
    """Drives one connection; `deliver` may be called again and again."""

    client: SMTPClientProtocol
    remote_host: str
    helo_name: str
    tls_context: Callable[[str], Any] | None = None  # host -> client context factory
    require_tls: bool = False
    credentials: Credentials | None = None
    extensions: dict[str, str] = field(default_factory=dict)
    encrypted: bool = False
    _log = Logger()

    @defer.inlineCallbacks
    def open(self) -> Any:
        """Greeting, EHLO, STARTTLS, EHLO again, AUTH.  Raises SessionError."""
        greeting = yield self.client.greeting
        if greeting.code != 220:
            raise SessionError(f"greeting: {greeting}", temporary=True, status=greeting.status(),
                               reply=greeting)
        yield self._hello()
        if "STARTTLS" in self.extensions and self.tls_context is not None:
            reply = yield self.client.send(b"STARTTLS")
            if reply.code == 220:
                self.client.start_tls(self.tls_context(self.remote_host))
                self.encrypted = True
                # RFC 3207 §4.2: forget everything learned before TLS.
                self.extensions = {}
                yield self._hello()
            elif self.require_tls:
                raise SessionError(f"STARTTLS refused: {reply}", status="4.7.0", reply=reply)
        if self.require_tls and not self.encrypted:
            raise SessionError("TLS is required but the server does not offer STARTTLS", status="4.7.0")
        if self.credentials is not None:
            yield self._authenticate(self.credentials)

    @defer.inlineCallbacks
    def _hello(self) -> Any:
        reply = yield self.client.send(b"EHLO " + self.helo_name.encode("ascii", "replace"))
        if reply.code == 250:
            self.extensions = ehlo_extensions(reply)
            return
        # RFC 5321 §3.2: a server that rejects EHLO may still take HELO.
        reply = yield self.client.send(b"HELO " + self.helo_name.encode("ascii", "replace"))
        if reply.code != 250:
            raise SessionError(f"HELO refused: {reply}", temporary=True, status=reply.status(), reply=reply)
        self.extensions = {}

    @defer.inlineCallbacks
    def _authenticate(self, credentials: Credentials) -> Any:
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        user = credentials.username.encode()
        password = credentials.password.encode()
        if "PLAIN" in mechanisms:
            # RFC 4616 with the RFC 4954 §4 initial response.
            token = base64.b64encode(b"\0" + user + b"\0" + password)
            reply = yield self.client.send(b"AUTH PLAIN " + token)
        elif "LOGIN" in mechanisms:
            reply = yield self.client.send(b"AUTH LOGIN")
            if reply.code == 334:
                reply = yield self.client.send(base64.b64encode(user))
            if reply.code == 334:
                reply = yield self.client.send(base64.b64encode(password))
        else:
            raise SessionError("the relay offers neither AUTH PLAIN nor AUTH LOGIN", status="4.7.0")
        if reply.code == 334:
            # A challenge we cannot answer: cancel the exchange (RFC 4954 §4).
            reply = yield self.client.send(b"*")
        if reply.code != 235:
            # Relay credentials are configuration: keep mail queued until fixed.
            raise SessionError(f"authentication failed: {reply}", status="4.7.0", reply=reply)

    @defer.inlineCallbacks
    def deliver(self, envelope: Envelope) -> Any:
        """-> Deferred[list[Outcome]] in the order of envelope.recipients.

        Replies are sorted into per-recipient outcomes; a lost connection
        raises (the caller makes every unfinished recipient temporary).
        """
        ext = self.extensions
        remote = self.remote_host
        needs_utf8 = not envelope.mail_from.isascii() or any(
            not r.address.isascii() for r in envelope.recipients
        )
        if needs_utf8 and "SMTPUTF8" not in ext:
            # RFC 6531 §3.5: no downgrade of an address; this is permanent.
            return [Outcome("permanent", "5.6.7", "the destination does not support SMTPUTF8 addresses",
                            remote)] * len(envelope.recipients)
        limit = ext.get("SIZE", "")
        if limit.isdigit() and int(limit) and envelope.size > int(limit):
            # RFC 1870 §6.3
            return [Outcome("permanent", "5.3.4",
                            f"message of {envelope.size} octets exceeds the server's limit of {limit}",
                            remote)] * len(envelope.recipients)
        dsn = "DSN" in ext
        mail = b"MAIL FROM:<" + envelope.mail_from.encode() + b">"
        if "SIZE" in ext:
            mail += b" SIZE=%d" % envelope.size
        if "8BITMIME" in ext:
            mail += b" BODY=8BITMIME"
        if needs_utf8:
            mail += b" SMTPUTF8"
        if dsn and envelope.ret:
            mail += b" RET=" + envelope.ret.upper().encode()
        if dsn and envelope.envid:
            mail += b" ENVID=" + xtext(envelope.envid).encode()
        rcpt_lines = []
        for r in envelope.recipients:
            line = b"RCPT TO:<" + r.address.encode() + b">"
            if dsn:
                # RFC 3461 §5.2.1: pass NOTIFY and ORCPT on to the next hop.
                if r.notify:
                    line += b" NOTIFY=" + ",".join(r.notify).encode()
                kind, _, original = (r.orcpt or "rfc822;" + r.address).partition(";")
                line += b" ORCPT=" + kind.encode("ascii", "replace") + b";" + xtext(original).encode()
            rcpt_lines.append(line)

        # RFC 2920 §3.1: MAIL, RCPTs and DATA in one group; DATA is last.
        if "PIPELINING" in ext:
            mail_d = self.client.send(mail)
            rcpt_ds = [self.client.send(line) for line in rcpt_lines]
            data_d = self.client.send(b"DATA", timeout=COMMAND_TIMEOUT)
            mail_reply = yield mail_d
            rcpt_replies = []
            for d in rcpt_ds:
                rcpt_replies.append((yield d))
            data_reply = yield data_d
        else:
            mail_reply = yield self.client.send(mail)
            rcpt_replies = []
            data_reply = None
            if mail_reply.code == 250:
                for line in rcpt_lines:
                    rcpt_replies.append((yield self.client.send(line)))
                if any(r.code in (250, 251) for r in rcpt_replies):
                    data_reply = yield self.client.send(b"DATA")

        if mail_reply.code != 250:
            yield self._abandon(data_reply)
            return [self._outcome(mail_reply)] * len(envelope.recipients)
        accepted = [r.code in (250, 251) for r in rcpt_replies]
        if not any(accepted):
            yield self._abandon(data_reply)
            return [self._outcome(r) for r in rcpt_replies]
        if data_reply is None or data_reply.code != 354:
            yield self._reset()
            failed = self._outcome(data_reply) if data_reply is not None else None
            return [failed if ok else self._outcome(r) for ok, r in zip(accepted, rcpt_replies, strict=True)]
        final = yield self.client.send_message(envelope.path)
        outcomes = []
        for ok, reply in zip(accepted, rcpt_replies, strict=True):
            if not ok:
                outcomes.append(self._outcome(reply))
            elif final.code == 250:
                outcomes.append(Outcome("sent", final.status(), str(final), remote,
                                        relayed_without_dsn=not dsn))
            else:
                outcomes.append(self._outcome(final))
        return outcomes

    def _outcome(self, reply: Reply) -> Outcome:
        kind = "permanent" if reply.permanent else "temporary"
        return Outcome(kind, reply.status(), str(reply), self.remote_host)

    @defer.inlineCallbacks
    def _abandon(self, data_reply: Reply | None) -> Any:
        """End a transaction that has no recipients.  A pipelined DATA that
        a server wrongly accepted gets an empty message (RFC 2920 §3.1)."""
        if data_reply is not None and data_reply.code == 354:
            yield self.client.send(b".")
        yield self._reset()

    @defer.inlineCallbacks
    def _reset(self) -> Any:
        reply = yield self.client.send(b"RSET")
        if reply.code != 250:
            raise SessionError(f"RSET refused: {reply}", reply=reply)

    @defer.inlineCallbacks
    def quit(self) -> Any:
        """Polite QUIT; any failure just closes the connection."""
        try:
            yield self.client.send(b"QUIT", timeout=QUIT_TIMEOUT)
        except Exception:
            pass
        self.client.close()


def split_recipients(recipients: Sequence[Any], size: int = MAX_RECIPIENTS_PER_TRANSACTION) -> list[Any]:
    return [list(recipients[i : i + size]) for i in range(0, len(recipients), size)]
