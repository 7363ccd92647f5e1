# -*- test-case-name: tests.protocols.managesieve.test_clients,tests.protocols.managesieve.test_server -*-
"""The ManageSieve Twisted Protocol: thin glue between the socket, the
sans-IO parser and the session state machine (as POP3's server.py).

- Commands are handled one at a time in arrival order; while one waits (a
  login, a script check, an index write) later pipelined input stays in the
  parser's buffer, and reading pauses once that holds more than
  MAX_PENDING_INPUT octets.
- The protocol is the transport's IPushProducer: while the client does not
  read its responses, no further command is taken.
- An idle timer (IDLE_TIMEOUT) and two deadlines that do not restart on
  every byte (xmail.limits.CommandDeadline): a command, its literals
  included, must arrive within [limits] command_timeout of its first byte
  (plus MIN_TRANSFER_RATE for a big script), and the login must be done
  within login_timeout of connecting.
- Script checks (`ISieveScripts.check`, CPU work: parsing) run in a small
  thread pool the factory owns (`ScriptChecks`), never on the reactor.
- SIGTERM drain (the factory's doStop): a session between commands gets
  `BYE (TRYLATER)`, one running a command gets it once that is done.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from twisted.internet import defer, protocol
from twisted.internet.interfaces import IPushProducer
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from twisted.python.threadpool import ThreadPool
from zope.interface import implementer

from xmail import metrics
from xmail.context import ServerContext
from xmail.limits import LOGIN, CommandDeadline
from xmail.protocols.managesieve import response
from xmail.protocols.managesieve.parser import NEED_DATA, CommandParser
from xmail.protocols.managesieve.session import ManageSieveSession, State
from xmail.tls import close_notify_without_waiting

MAX_PENDING_INPUT = 64 * 1024
# RFC 5804 sets no autologout; Dovecot's managesieve waits 30 minutes, a
# script editor left open needs no more than that.
IDLE_TIMEOUT = 1800
CHECK_THREADS = 2  # scripts parsed at once, per process


class ScriptChecks:
    """The factory's bounded thread pool for script checks: started on
    first use, stopped with the factory once its sessions are gone (and at
    reactor shutdown)."""

    def __init__(self, reactor: Any, threads: int = CHECK_THREADS):
        self.reactor = reactor
        self.threads = threads
        self._pool: ThreadPool | None = None
        self._trigger: Any = None

    def run(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        if self._pool is None:
            self._pool = ThreadPool(minthreads=0, maxthreads=self.threads, name="xmail-managesieve-check")
            self._pool.start()
            self._trigger = self.reactor.addSystemEventTrigger("during", "shutdown", self.stop)
        return deferToThreadPool(self.reactor, self._pool, fn, *args)

    @property
    def running(self) -> bool:
        return self._pool is not None

    def stop(self) -> None:
        pool, self._pool = self._pool, None
        trigger, self._trigger = self._trigger, None
        if trigger is not None:
            try:
                self.reactor.removeSystemEventTrigger(trigger)
            except (ValueError, KeyError):
                pass  # called by the trigger itself
        if pool is not None:
            pool.stop()


@implementer(IPushProducer)
class ManageSieveProtocol(protocol.Protocol, TimeoutMixin):
    """One ManageSieve connection; implements session.SessionIO."""

    _log = Logger()
    factory: ManageSieveFactory

    def __init__(self) -> None:
        self.parser = CommandParser()
        self.session: ManageSieveSession | None = None
        self.write_paused = False
        self._busy: defer.Deferred[Any] | None = None
        self._processing = False
        self._reading_paused = False
        self._closed = False
        self.deadline: CommandDeadline | None = None
        self._login_overdue = False
        self._shutdown_pending = False

    # -- Protocol ------------------------------------------------------------------------
    def connectionMade(self) -> None:
        ctx = self.factory.ctx
        self.callLater = ctx.reactor.callLater  # TimeoutMixin, injectable clock
        client_ip = getattr(self.transport.getPeer(), "host", "")
        self.session = ManageSieveSession(ctx, self, client_ip=client_ip, secure=self.factory.implicit_tls)
        limits = ctx.settings.limits
        self.deadline = CommandDeadline(ctx.reactor, command_timeout=limits.command_timeout,
                                        login_timeout=limits.login_timeout,
                                        on_expired=self._deadline_passed)
        self.factory.sessions.add(self)
        self.transport.registerProducer(self, True)
        self.transport.write(self.session.greeting())
        self.setTimeout(self.factory.idle_timeout or None)

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
        self.factory.session_ended(self)
        if self.session is not None:
            self.session.connection_lost()

    def timeoutConnection(self) -> None:
        self.transport.write(response.bye("Disconnected for inactivity", "TRYLATER"))
        self.close()

    # -- deadlines and drain ----------------------------------------------------------------
    def _deadline_passed(self, kind: str) -> None:
        if self._closed or self.session is None:
            return
        if kind == LOGIN:
            if self.session.state is not State.NONAUTH:
                return
            if self._busy is not None:
                self._login_overdue = True  # a login being checked: judge it first
                return
            self.transport.write(response.bye("Login took too long", "TRYLATER"))
        else:
            self.transport.write(response.bye("Command took too long to arrive", "TRYLATER"))
        self.close()

    def _update_deadline(self) -> None:
        session, deadline = self.session, self.deadline
        if session is None or deadline is None or self._closed:
            return
        if session.state is State.AUTH:
            deadline.logged_in()
        if self._busy is not None or self.write_paused or self.parser.idle:
            deadline.idle()
        else:
            deadline.pending()

    def shutdown(self) -> None:
        """SIGTERM drain: BYE now when between commands, else once the
        running command is done."""
        if self._closed:
            return
        if self._busy is not None:
            self._shutdown_pending = True
            return
        self.transport.write(response.bye("Server shutting down", "TRYLATER"))
        self.close()

    # -- IPushProducer ------------------------------------------------------------------------
    def pauseProducing(self) -> None:
        self.write_paused = True

    def resumeProducing(self) -> None:
        self.write_paused = False
        if not self._closed:
            self.resetTimeout()
            self._process()

    def stopProducing(self) -> None:
        pass

    # -- command loop -------------------------------------------------------------------------
    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        try:
            session = self.session
            assert session is not None
            while (self._busy is None and not self.write_paused and not self._closed
                   and session.state is not State.LOGOUT):
                event = self.parser.next_event()
                if event is NEED_DATA:
                    break
                started = metrics.clock()
                result = metrics.track("managesieve", getattr(event, "name", "BAD"),
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
            self._log.failure("ManageSieve command failed", result)
            self.close()
            return
        session = self.session
        in_nonauth = session is not None and session.state is State.NONAUTH
        if (self._shutdown_pending or (self._login_overdue and in_nonauth)) and not self._closed:
            reason = "Server shutting down" if self._shutdown_pending else "Login took too long"
            self.transport.write(response.bye(reason, "TRYLATER"))
            self.close()
            return
        if not self._processing:
            self._process()

    def _read_back_pressure(self) -> None:
        if self._closed:
            return
        waiting = self._busy is not None or self.write_paused
        want_pause = waiting and self.parser.buffered > MAX_PENDING_INPUT
        if want_pause and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        elif not want_pause and self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()

    # -- SessionIO --------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self._closed:
            self.transport.write(data)

    def start_tls(self) -> None:
        # RFC 5804 §2.2 (cf. RFC 3207 §4.2, STARTTLS command injection): what
        # the client pipelined after STARTTLS came in plaintext and is dropped.
        self.parser.discard_buffer()
        self.transport.startTLS(self.factory.ctx.tls)

    def expect_sasl_response(self) -> None:
        self.parser.expect_sasl_response()

    def set_literal_limits(self, limit: int, discard: int) -> None:
        self.parser.literal_limit = limit
        self.parser.discard_limit = discard

    def run_check(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        return self.factory.checks.run(fn, *args)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.setTimeout(None)
            if self.deadline is not None:
                self.deadline.stop()
            self.transport.unregisterProducer()
            if self.session is not None and self.session.secure:
                close_notify_without_waiting(self.transport)
            self.transport.loseConnection()


class ManageSieveFactory(protocol.Factory):
    """Built once per listener by xmail.service (`managesieve`)."""

    protocol = ManageSieveProtocol

    def __init__(self, ctx: ServerContext, *, implicit_tls: bool = False, idle_timeout: int = IDLE_TIMEOUT,
                 **kwargs: Any):
        self.ctx = ctx
        self.implicit_tls = implicit_tls
        self.idle_timeout = idle_timeout
        self.sessions: set[ManageSieveProtocol] = set()
        self.checks = ScriptChecks(ctx.reactor)
        self._stopping = False

    def doStart(self) -> None:
        super().doStart()
        self._stopping = False

    def doStop(self) -> None:
        """The last listening port closed (SIGTERM): every session ends once
        its current command is done; the check pool goes with the last."""
        super().doStop()
        self._stopping = True
        for proto in list(self.sessions):
            proto.shutdown()
        if not self.sessions:
            self.checks.stop()

    def session_ended(self, proto: ManageSieveProtocol) -> None:
        self.sessions.discard(proto)
        if self._stopping and not self.sessions:
            self.checks.stop()
