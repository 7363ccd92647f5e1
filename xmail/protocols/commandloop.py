# -*- test-case-name: tests.protocols.test_commandloop -*-
"""The command loop of a line protocol's Twisted glue, shared by POP3 and
ManageSieve (a plain module in xmail/protocols/: no protocol imports
another, each may import this).

`CommandLoopProtocol` is the Twisted Protocol between the socket, a sans-IO
parser and a session state machine; a protocol subclasses it and fills in a
few hooks (below).  What it does for both:

- Commands are handled one at a time in arrival order.  While one waits on
  a Deferred (a login, an expunge, a script check) later pipelined input
  stays in the parser's buffer, and reading from the socket pauses once
  that holds more than `max_pending_input` octets.
- The protocol is the transport's IPushProducer for its whole life: while
  the client does not read our replies, no further command is taken.
- The idle timer (TimeoutMixin) restarts on every byte and whenever the
  client takes output, so two deadlines that do not (xmail.limits.
  CommandDeadline, issue 16 #4) catch a trickling client: a command must
  arrive within [limits] command_timeout of its first byte, and the login
  must be done within login_timeout of connecting.
- SIGTERM drain (`shutdown`, from the factory's doStop): a session between
  commands is told and closed now; one running a command once that is done.
- A connection over TLS closes without waiting for the client's
  close_notify, so a drained or timed-out session leaves at once.

The hooks (class attributes, and methods with a default):

  metrics_label      the `protocol` label of xmail.metrics ("pop3")
  log_label          how the log names the protocol ("POP3")
  event_name         the attribute of a parsed event that names its command
                     ("keyword"); an event without it counts as "BAD"
  need_data          the parser's "no complete event yet" sentinel
  login_state        the session state before login (the login deadline
                     applies only there; any other counts as logged in)
  done_states        session states in which no further command is taken
  IDLE_BYE, COMMAND_OVERDUE_BYE, LOGIN_OVERDUE_BYE, SHUTDOWN_BYE
                     the bytes sent before closing for each reason
  make_session(client_ip)   the session for a new connection (no default)
  idle_timeout()            seconds of the idle timer, None: none (no default)
  forget()                  the factory drops the connection (on loss)
  resume_output()           the client reads again: go on

IMAP's and SMTP's glue keep their own loops: IMAP yields to the reactor
between pipelined commands, waits for raw lines (AUTHENTICATE, IDLE) while
busy, runs COMPRESS=DEFLATE between socket and tokenizer and times out by
login state; SMTP's session owns parser and close, its replies come from a
catalog, and its idle timer stops while a command runs.
"""

from __future__ import annotations

import enum
from typing import Any, ClassVar, Protocol

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from xmail import metrics
from xmail.limits import LOGIN, CommandDeadline
from xmail.tls import close_notify_without_waiting

MAX_PENDING_INPUT = 64 * 1024  # buffered input while we cannot take commands


class LineParser(Protocol):
    """What the loop needs of a protocol's sans-IO parser."""

    @property
    def idle(self) -> bool:
        """No partial command buffered: the client owes nothing."""

    @property
    def buffered(self) -> int:
        """Octets received and not yet consumed."""

    def receive_data(self, data: bytes) -> None: ...

    def next_event(self) -> Any:
        """The next complete event, or the parser's NEED_DATA sentinel."""

    def discard_buffer(self) -> None: ...

    def expect_sasl_response(self) -> None: ...


class CommandSession(Protocol):
    """What the loop needs of a protocol's session state machine."""

    state: Any
    secure: bool

    def greeting(self) -> bytes: ...

    def handle(self, event: Any) -> defer.Deferred[Any] | None:
        """Act on one event; a Deferred while the command is not done."""

    def connection_lost(self) -> None: ...


@implementer(IPushProducer)
class CommandLoopProtocol(protocol.Protocol, TimeoutMixin):
    """One connection of a line protocol: feeds its parser, runs its session
    one command at a time, and closes on the idle timer, the deadlines and
    the SIGTERM drain.  Implements the part of a session's SessionIO that
    every protocol has (`write`, `start_tls`, `expect_sasl_response`,
    `close`).  See the module docstring for the hooks."""

    _log = Logger()
    factory: Any  # has .ctx (ServerContext), .sessions (set) and .implicit_tls

    metrics_label: ClassVar[str]
    log_label: ClassVar[str]
    event_name: ClassVar[str]
    need_data: ClassVar[object]
    login_state: ClassVar[enum.Enum]
    done_states: ClassVar[frozenset[enum.Enum]]
    IDLE_BYE: ClassVar[bytes]
    COMMAND_OVERDUE_BYE: ClassVar[bytes]
    LOGIN_OVERDUE_BYE: ClassVar[bytes]
    SHUTDOWN_BYE: ClassVar[bytes]
    max_pending_input: ClassVar[int] = MAX_PENDING_INPUT

    def __init__(self, parser: LineParser) -> None:
        self.parser = parser
        self.session: Any = None  # a CommandSession once connected
        self.write_paused = False
        self._busy: defer.Deferred[Any] | None = None  # the command being waited for
        self._processing = False
        self._reading_paused = False
        self._closed = False
        self.deadline: CommandDeadline | None = None
        self._login_overdue = False  # login_timeout passed while a command ran
        self._shutdown_pending = False  # SIGTERM: close once the command is done

    # -- hooks (the first two every protocol fills in) -------------------------------
    def make_session(self, client_ip: str) -> CommandSession:
        """The session of a new connection from `client_ip`."""
        raise NotImplementedError

    def idle_timeout(self) -> float | None:
        """Seconds the idle timer allows (None or 0: no timer)."""
        raise NotImplementedError

    def forget(self) -> None:
        """The connection is gone: the factory stops counting it."""
        self.factory.sessions.discard(self)

    def resume_output(self) -> None:
        """The client reads again (the transport resumed us): take commands."""
        self._process()

    # -- Protocol --------------------------------------------------------------------
    def connectionMade(self) -> None:
        ctx = self.factory.ctx
        self.callLater = ctx.reactor.callLater  # TimeoutMixin, injectable clock
        client_ip = getattr(self.transport.getPeer(), "host", "")
        self.session = self.make_session(client_ip)
        limits = ctx.settings.limits
        self.deadline = CommandDeadline(ctx.reactor, command_timeout=limits.command_timeout,
                                        login_timeout=limits.login_timeout,
                                        on_expired=self._deadline_passed)
        self.factory.sessions.add(self)
        self.transport.registerProducer(self, True)
        self.transport.write(self.session.greeting())
        self.setTimeout(self.idle_timeout())

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        self.resetTimeout()
        if self.deadline is not None:
            self.deadline.received(len(data))
        self.parser.receive_data(data)
        self._process()

    def connectionLost(self, reason: Any = None) -> None:
        self._closed = True
        self.setTimeout(None)
        if self.deadline is not None:
            self.deadline.stop()
        self.forget()
        if self.session is not None:
            self.session.connection_lost()

    def timeoutConnection(self) -> None:
        self.transport.write(self.IDLE_BYE)
        self.close()

    # -- deadlines and drain ---------------------------------------------------------
    def _deadline_passed(self, kind: str) -> None:
        if self._closed or self.session is None:
            return
        if kind == LOGIN:
            if self.session.state is not self.login_state:
                return
            if self._busy is not None:
                self._login_overdue = True  # a login being checked: judge it first
                return
            self.transport.write(self.LOGIN_OVERDUE_BYE)
        else:
            self.transport.write(self.COMMAND_OVERDUE_BYE)
        self.close()

    def _update_deadline(self) -> None:
        session, deadline = self.session, self.deadline
        if session is None or deadline is None or self._closed:
            return
        if session.state is not self.login_state:
            deadline.logged_in()
        # The clock runs only while the client owes the rest of a command.
        if self._busy is not None or self.write_paused or self.parser.idle:
            deadline.idle()
        else:
            deadline.pending()

    def shutdown(self) -> None:
        """SIGTERM drain: say SHUTDOWN_BYE and close now when between
        commands, else once the running command is done."""
        if self._closed:
            return
        if self._busy is not None:
            self._shutdown_pending = True
            return
        self.transport.write(self.SHUTDOWN_BYE)
        self.close()

    # -- IPushProducer (the transport's write buffer) --------------------------------
    def pauseProducing(self) -> None:
        self.write_paused = True

    def resumeProducing(self) -> None:
        self.write_paused = False
        if self._closed:
            return
        self.resetTimeout()  # the client is taking data: not idle
        self.resume_output()

    def stopProducing(self) -> None:
        pass

    # -- command loop ----------------------------------------------------------------
    def _process(self) -> None:
        if self._processing:
            return  # re-entered from a command that finished at once
        self._processing = True
        try:
            session = self.session
            assert session is not None
            while (self._busy is None and not self.write_paused and not self._closed
                   and session.state not in self.done_states):
                event = self.parser.next_event()
                if event is self.need_data:
                    break
                started = metrics.clock()
                result = metrics.track(self.metrics_label, getattr(event, self.event_name, "BAD"),
                                       session.handle(event), started)  # type: ignore[arg-type]
                if isinstance(result, defer.Deferred):
                    self._busy = result
                    result.addBoth(self._command_done)
        finally:
            self._processing = False
        self._read_back_pressure()
        self._update_deadline()

    def _command_done(self, result: Any) -> None:
        self._busy = None
        if isinstance(result, Failure):
            self._log.failure("{protocol} command failed", result, protocol=self.log_label)
            self.close()
            return
        session = self.session
        before_login = session is not None and session.state is self.login_state
        if (self._shutdown_pending or (self._login_overdue and before_login)) and not self._closed:
            self.transport.write(self.SHUTDOWN_BYE if self._shutdown_pending else self.LOGIN_OVERDUE_BYE)
            self.close()
            return
        if not self._processing:
            self._process()

    def _read_back_pressure(self) -> None:
        # Pause reading only once enough is buffered while we cannot take
        # commands: the client is then throttled by TCP, not by our memory.
        if self._closed:
            return
        waiting = self._busy is not None or self.write_paused
        want_pause = waiting and self.parser.buffered > self.max_pending_input
        if want_pause and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        elif not want_pause and self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()

    # -- SessionIO -------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self._closed:
            self.transport.write(data)

    def start_tls(self) -> None:
        # RFC 3207 §4.2 (STARTTLS command injection, CVE-2011-0411 class),
        # as RFC 2595 §4 (POP3 STLS) and RFC 5804 §2.2 (ManageSieve) ask:
        # what the client pipelined after the command came in plaintext and
        # is dropped.
        self.parser.discard_buffer()
        self.transport.startTLS(self.factory.ctx.tls)

    def expect_sasl_response(self) -> None:
        self.parser.expect_sasl_response()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.setTimeout(None)
            if self.deadline is not None:
                self.deadline.stop()
            # A registered producer would keep the connection open.
            self.transport.unregisterProducer()
            if self.session is not None and self.session.secure:
                close_notify_without_waiting(self.transport)
            self.transport.loseConnection()
