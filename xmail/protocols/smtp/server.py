# -*- test-case-name: tests.protocols.test_smtp_mx -*-
"""The Twisted side of SMTP: bytes to the session, replies to the socket.

Thin glue (the model is twisted.web._http2): `dataReceived` feeds the
sans-IO parser, and events go to the session one at a time.  While the
session waits on a Deferred (a slow recipient check, a delivery) no
further event is handled, so pipelined commands (RFC 2920) run strictly in
order; input arriving meanwhile is buffered up to PAUSE_BUFFERED, then the
transport is paused.

The protocol is the transport's streaming producer (IPushProducer): when
the client does not read our replies (an EHLO loop that never reads made
the server grow by 507 MB, issue 16 #3) no further command is taken until
the transport has drained, and reading stops once PAUSE_BUFFERED of input
waits: the replies we hold stay bounded by the transport's buffer plus one
reply.

Deadlines (xmail.limits.CommandDeadline, issue 16 #4): a command line, or a
DATA / BDAT body, must arrive within [limits] command_timeout of its first
byte (plus 1 s per 4 KiB); on submission, AUTH must succeed within
login_timeout of connecting.  The idle timer alone restarted on every byte.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.internet.protocol import Protocol, ServerFactory
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from zope.interface import implementer

from xmail.limits import LOGIN, CommandDeadline
from xmail.protocols.smtp import replies
from xmail.protocols.smtp.delivery import MailAgent
from xmail.protocols.smtp.parser import NEED_DATA
from xmail.protocols.smtp.session import MX, SUBMISSION, SMTPSession

# Input buffered while a command waits on a Deferred before reading pauses.
PAUSE_BUFFERED = 64 * 1024


@implementer(IPushProducer)
class SMTPServerProtocol(Protocol, TimeoutMixin):
    _log = Logger()

    def __init__(self, factory: SMTPFactory):
        self.factory = factory
        self.session: SMTPSession | None = None
        self._waiting = False
        self._paused = False  # reading paused
        self._write_paused = False  # the client is not reading our replies
        self._gone = False
        self.deadline: CommandDeadline | None = None
        self._login_overdue = False

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
        limits = factory.ctx.settings.limits
        self.deadline = CommandDeadline(
            factory.ctx.reactor, command_timeout=limits.command_timeout, login_timeout=limits.login_timeout,
            on_expired=self._deadline_passed, login_required=factory.mode == SUBMISSION)
        self.transport.registerProducer(self, True)
        factory.sessions.add(self)
        self.session.greeting()

    def dataReceived(self, data: bytes) -> None:
        session = self.session
        if session is None or session.closed:
            return
        self.resetTimeout()
        if self.deadline is not None:
            self.deadline.received(len(data))
        session.parser.receive_data(data)
        if not (self._waiting or self._write_paused):
            self._process()
        self._read_back_pressure()
        self._update_deadline()

    def _read_back_pressure(self) -> None:
        # Pause reading only once enough is buffered while we cannot take
        # commands: pausing at every wait costs two epoll changes per message.
        session = self.session
        if session is None or self._gone:
            return
        if self._waiting or self._write_paused:
            if session.parser.buffered > PAUSE_BUFFERED and not self._paused:
                self._paused = True
                self.transport.pauseProducing()
        elif self._paused:
            self._paused = False
            self.transport.resumeProducing()

    # -- IPushProducer: our replies ------------------------------------------------------
    def pauseProducing(self) -> None:
        self._write_paused = True

    def resumeProducing(self) -> None:
        self._write_paused = False
        if self._gone or self._waiting:
            return
        self._process()
        self._read_back_pressure()

    def stopProducing(self) -> None:
        self._gone = True

    # -- deadlines ------------------------------------------------------------------------------
    def _update_deadline(self) -> None:
        session, deadline = self.session, self.deadline
        if session is None or deadline is None or session.closed:
            return
        if session.user:
            deadline.logged_in()
        # The clock runs only while the client owes the rest of a command.
        if self._waiting or self._write_paused or session.parser.idle:
            deadline.idle()
        else:
            deadline.pending()

    def _deadline_passed(self, kind: str) -> None:
        session = self.session
        if session is None or session.closed:
            return
        hostname = self.factory.agent.hostname
        if kind == LOGIN:
            if session.user:
                return
            if self._waiting:
                self._login_overdue = True  # an AUTH being checked: judge it first
                return
            session.close(replies.LOGIN_TIMEOUT.format(hostname))
        else:
            session.close(replies.COMMAND_TIMEOUT.format(hostname))

    def _process(self) -> None:
        session = self.session
        assert session is not None
        while not self._waiting and not session.closed:
            if self._write_paused:
                break  # the client is not reading: take no more commands
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
        self._update_deadline()

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
        if self._login_overdue and session is not None and not session.user:
            session.close(replies.LOGIN_TIMEOUT.format(self.factory.agent.hostname))
            return
        self.setTimeout(self.factory.idle_timeout)
        if not self._write_paused:  # else resumeProducing goes on
            self._process()
        self._read_back_pressure()
        self._update_deadline()

    def timeoutConnection(self) -> None:
        if self.session is not None:
            self.session.close(replies.IDLE_TIMEOUT.format(self.factory.agent.hostname))

    def connectionLost(self, reason: Any = None) -> None:
        self._gone = True
        self.setTimeout(None)
        if self.deadline is not None:
            self.deadline.stop()
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
        if self.deadline is not None:
            self.deadline.stop()
        # A registered producer would keep the connection open.
        self.transport.unregisterProducer()
        self.transport.loseConnection()


class SMTPFactory(ServerFactory):
    """`smtp` (mode "mx"), `submission` and `submissions` (mode "submission")."""

    def __init__(self, ctx: Any, *, implicit_tls: bool, mode: str = MX,
                 send_saver: Callable[..., Any] | None = None):
        if mode not in (MX, SUBMISSION):
            raise ValueError(f"unknown SMTP mode {mode!r}")
        self.ctx = ctx
        self.implicit_tls = implicit_tls
        self.mode = mode
        self.agent = MailAgent(ctx, mode, send_saver)
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
