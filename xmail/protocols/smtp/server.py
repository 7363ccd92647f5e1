# -*- test-case-name: tests.protocols.test_smtp_mx -*-
"""The Twisted side of SMTP: bytes to the session, replies to the socket.

Thin glue (the model is twisted.web._http2): `dataReceived` feeds the
sans-IO parser, and events go to the session one at a time.  While the
session waits on a Deferred (a slow recipient check, a delivery) no
further event is handled, so pipelined commands (RFC 2920) run strictly in
order; input arriving meanwhile is buffered up to PAUSE_BUFFERED, then the
transport is paused.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin

from xmail.protocols.smtp import replies
from xmail.protocols.smtp.delivery import MailAgent
from xmail.protocols.smtp.parser import NEED_DATA
from xmail.protocols.smtp.session import MX, SUBMISSION, SMTPSession

# Input buffered while a command waits on a Deferred before reading pauses.
PAUSE_BUFFERED = 64 * 1024


class SMTPServerProtocol(Protocol, TimeoutMixin):
    _log = Logger()

    def __init__(self, factory: SMTPFactory):
        self.factory = factory
        self.session: SMTPSession | None = None
        self._waiting = False
        self._paused = False
        self._gone = False

    # -- Protocol ------------------------------------------------------------------
    def connectionMade(self) -> None:
        factory = self.factory
        # Pipelined replies are small writes: without TCP_NODELAY, Nagle and the
        # client's delayed ACK can hold one back ~40 ms.
        if hasattr(self.transport, "setTcpNoDelay"):
            self.transport.setTcpNoDelay(True)
        peer = self.transport.getPeer()
        host = getattr(peer, "host", "") or ""
        self.session = SMTPSession(
            factory.agent, self, mode=factory.mode, client_ip=host, secure=factory.implicit_tls,
            tls_available=factory.ctx.tls is not None and not factory.implicit_tls)
        self.setTimeout(factory.idle_timeout)
        factory.sessions.add(self)
        self.session.greeting()

    def dataReceived(self, data: bytes) -> None:
        session = self.session
        if session is None or session.closed:
            return
        self.resetTimeout()
        session.parser.receive_data(data)
        if self._waiting:
            # Pause reading only once enough is buffered: pausing at every
            # wait costs two epoll changes per message.
            if session.parser.buffered > PAUSE_BUFFERED and not self._paused:
                self._paused = True
                self.transport.pauseProducing()
            return
        self._process()

    def _process(self) -> None:
        session = self.session
        assert session is not None
        while not self._waiting and not session.closed:
            event = session.parser.next_event()
            if event is NEED_DATA:
                break
            try:
                result = session.handle(event)
            except Exception:
                self._log.failure("SMTP session error")
                session.close(replies.TEMPORARY_FAILURE.with_text("Internal error, closing connection"))
                break
            if isinstance(result, defer.Deferred) and not result.called:
                self._wait(result)
                break

    def _wait(self, d: defer.Deferred[Any]) -> None:
        self._waiting = True
        self.setTimeout(None)  # the server is busy, not the client idle
        d.addErrback(lambda f: self._log.failure("SMTP command failed", f))
        d.addBoth(self._resume)

    def _resume(self, _: Any) -> None:
        self._waiting = False
        session = self.session
        if self._gone:
            if session is not None:
                session.discard_transaction()
            return
        if self.factory.stopping and session is not None:
            session.close(replies.SHUTTING_DOWN.format(self.factory.agent.hostname))
            return
        self.setTimeout(self.factory.idle_timeout)
        if self._paused:
            self._paused = False
            self.transport.resumeProducing()
        self._process()

    def timeoutConnection(self) -> None:
        if self.session is not None:
            self.session.close(replies.IDLE_TIMEOUT.format(self.factory.agent.hostname))

    def connectionLost(self, reason: Any = None) -> None:
        self._gone = True
        self.setTimeout(None)
        self.factory.sessions.discard(self)
        session = self.session
        if session is not None:
            session.closed = True
            session.release_login()  # the session's lease: its per-user slot
            if not self._waiting:
                # A pending delivery cleans up when it finishes (its files
                # may still be being copied).
                session.discard_transaction()

    # -- the session's io ----------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self._gone:
            self.transport.write(data)

    def start_tls(self) -> None:
        self.transport.startTLS(self.factory.ctx.tls)

    def close(self) -> None:
        self.transport.loseConnection()


class SMTPFactory(ServerFactory):
    """`smtp` (mode "mx"), `submission` and `submissions` (mode "submission")."""

    def __init__(self, ctx: Any, *, implicit_tls: bool, mode: str = MX):
        if mode not in (MX, SUBMISSION):
            raise ValueError(f"unknown SMTP mode {mode!r}")
        self.ctx = ctx
        self.implicit_tls = implicit_tls
        self.mode = mode
        self.agent = MailAgent(ctx, mode)
        self.idle_timeout = ctx.settings.limits.smtp_idle_timeout
        self.sessions: set[SMTPServerProtocol] = set()
        self.stopping = False

    def buildProtocol(self, addr: Any) -> SMTPServerProtocol:
        if self.stopping:
            self.stopping = False  # listening again after a restart
        return SMTPServerProtocol(self)

    def doStop(self) -> None:
        """The last listening port closed (SIGTERM): idle sessions get
        421 4.3.2 now, busy ones once their current command has finished."""
        super().doStop()
        self.stopping = True
        for protocol in list(self.sessions):
            if not protocol._waiting and protocol.session is not None:
                protocol.session.close(replies.SHUTTING_DOWN.format(self.agent.hostname))
