# -*- test-case-name: tests.protocols.managesieve.test_clients,tests.protocols.managesieve.test_server -*-
"""The ManageSieve Twisted Protocol: thin glue between the socket, the
sans-IO parser and the session state machine.  The command loop, read
back-pressure, deadlines and drain are the shared
xmail.protocols.commandloop's (as POP3's); this module gives it
ManageSieve's hooks and owns the script-check thread pool.

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
from twisted.internet.threads import deferToThreadPool
from twisted.python.threadpool import ThreadPool

from xmail.context import ServerContext
from xmail.protocols.commandloop import CommandLoopProtocol
from xmail.protocols.managesieve import response
from xmail.protocols.managesieve.parser import NEED_DATA, CommandParser
from xmail.protocols.managesieve.session import ManageSieveSession, State

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


class ManageSieveProtocol(CommandLoopProtocol):
    """One ManageSieve connection; implements session.SessionIO.  The
    command loop, back-pressure, deadlines and drain are
    xmail.protocols.commandloop's; the BYE lines are ManageSieve's own."""

    factory: ManageSieveFactory

    metrics_label = "managesieve"
    log_label = "ManageSieve"
    event_name = "name"
    need_data = NEED_DATA
    login_state = State.NONAUTH
    done_states = frozenset({State.LOGOUT})
    # RFC 5804 §1.3: TRYLATER, a temporary condition; the client may come
    # back later.
    IDLE_BYE = response.bye("Disconnected for inactivity", "TRYLATER")
    COMMAND_OVERDUE_BYE = response.bye("Command took too long to arrive", "TRYLATER")
    LOGIN_OVERDUE_BYE = response.bye("Login took too long", "TRYLATER")
    SHUTDOWN_BYE = response.bye("Server shutting down", "TRYLATER")
    max_pending_input = MAX_PENDING_INPUT

    def __init__(self) -> None:
        super().__init__(CommandParser())

    # -- the command loop's hooks ---------------------------------------------------------
    def make_session(self, client_ip: str) -> ManageSieveSession:
        return ManageSieveSession(self.factory.ctx, self, client_ip=client_ip,
                                  secure=self.factory.implicit_tls)

    def idle_timeout(self) -> float | None:
        return self.factory.idle_timeout or None

    def forget(self) -> None:
        self.factory.session_ended(self)  # the check pool may stop with the last

    # -- SessionIO --------------------------------------------------------------------------------
    def set_literal_limits(self, limit: int, discard: int) -> None:
        self.parser.literal_limit = limit
        self.parser.discard_limit = discard

    def run_check(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        return self.factory.checks.run(fn, *args)


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
