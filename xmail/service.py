# -*- test-case-name: tests.test_service -*-
"""Builds the one MultiService that `twistd xmail` and tac/xmail.tac run.

Children start in order and stop in reverse: the core (index, store,
directory, portal, queue, timers) starts first and stops last, so that
listeners stop accepting and sessions finish before the index closes.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints, task
from twisted.internet.interfaces import IListeningPort
from twisted.internet.threads import deferToThread
from twisted.logger import Logger
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.web import resource

from xmail import limits, tls
from xmail.auth.directory import Directory
from xmail.auth.realm import make_portal
from xmail.autoconfig.resource import AutoconfigResource
from xmail.config import Settings
from xmail.context import ServerContext, SharedTables
from xmail.daemon import stop_with_error
from xmail.db.environment import IndexEnvironment
from xmail.db.leader import LEADER_LOCK, LeaderElection
from xmail.filter.build import build_protection, load_package_data
from xmail.filter.digest import RUN_INTERVAL
from xmail.metrics import count_connections, index_write
from xmail.ops.audit import AuditLog
from xmail.ops.http import mount_metrics
from xmail.preflight import StartupError, bind_error, describe
from xmail.protocols.http.server import HTTPFactory
from xmail.protocols.imap.server import IMAPFactory
from xmail.protocols.managesieve.server import ManageSieveFactory
from xmail.protocols.pop3.server import POP3Factory
from xmail.protocols.smtp.limits import DailySendCounter
from xmail.protocols.smtp.server import SMTPFactory
from xmail.queue.runner import DeliveryQueue
from xmail.sendsave import SendSaver
from xmail.sieve.srs import SECRET_FILE as SRS_SECRET
from xmail.sieve.srs import SRS, load_secret
from xmail.sieve.storage import SieveScripts
from xmail.store.mailstore import MailStore


def http_root(ctx: ServerContext) -> resource.IResource:
    """What the `http` listener serves: the autoconfig pages and, unless
    `[metrics] enabled = false`, GET /metrics (issue #8).  Built here, the
    one floor that may import both a protocol and the features it serves."""
    root = AutoconfigResource(ctx)
    mount_metrics(root, ctx)
    return root


# listener name -> (protocol factory, factory keyword arguments, implicit TLS)
PROTOCOLS: dict[str, tuple[Callable[..., Any], dict[str, Any], bool]] = {
    "smtp": (SMTPFactory, {"mode": "mx"}, False),
    "submission": (SMTPFactory, {"mode": "submission", "send_saver": SendSaver}, False),
    "submissions": (SMTPFactory, {"mode": "submission", "send_saver": SendSaver}, True),
    "pop3": (POP3Factory, {}, False),
    "pop3s": (POP3Factory, {}, True),
    "imap": (IMAPFactory, {}, False),
    "imaps": (IMAPFactory, {}, True),
    "http": (HTTPFactory, {"root": http_root}, False),
    "managesieve": (ManageSieveFactory, {}, False),
}

RECYCLE_PURGE_INTERVAL = 3600.0  # seconds between Recycle purges
DIGEST_INTERVAL = RUN_INTERVAL  # xmail.filter.digest: hourly look for due spam digests
# SIGTERM drain (DESIGN "Running"): the time a listener's sessions have to
# finish the command they are running (a RETR or FETCH being streamed to a
# slow client, a delivery) once its factory's doStop told them to end;
# under the supervisor's DRAIN_TIMEOUT (60 s, then SIGKILL).  What is left
# after it is cut by the reactor's shutdown.
SESSION_DRAIN_TIMEOUT = 30.0
# Once every session has said goodbye, the time its last bytes have to
# leave Twisted's buffers (the reactor's shutdown drops them): a TLS peer
# that never answers close_notify holds the drain no longer than this.
SESSION_LINGER = 2.0
DRAIN_POLL = 0.05
QUEUE_KICK = b"Q"  # bus datagram kind: "mail was queued, leader please scan"


class CoreService(service.Service):
    """Opens the index and builds the store, directory and portal into ctx."""

    _log = Logger()

    def __init__(self, ctx: ServerContext, shared: SharedTables | None = None):
        """shared: what this worker shares with the others (the bus and the
        login failure counts are used here); None: one process."""
        self.ctx = ctx
        self.shared = shared or SharedTables()
        self.env: IndexEnvironment | None = None
        self._purge: task.LoopingCall | None = None
        self._digest: task.LoopingCall | None = None
        self.protection: Any = None
        # The one election of a data directory (issue 14): whoever holds
        # run/leader.lock runs the singleton jobs, the queue runner among
        # them; a process on its own wins it at once.
        self.leader = LeaderElection(ctx.settings.path("run", LEADER_LOCK), ctx.reactor,
                                     self.start_singletons)
        self.singletons = False

    def startService(self) -> None:
        settings = self.ctx.settings
        for path in (settings.data_dir, *(settings.path(sub) for sub in ("mail", "queue", "log", "run"))):
            try:
                os.makedirs(path, mode=0o700, exist_ok=True)
            except OSError as e:
                raise StartupError(f"[server] data_dir: cannot create {os.path.abspath(path)}: "
                                   f"{e.strerror or e}") from None
        # As the service user: it must be able to read the certificate for
        # a SIGHUP reload anyway.
        try:
            self.ctx.tls.load()
        except Exception as e:
            # preflight checked the files as the user twistd started as;
            # this is the service user, or a file changed since.
            raise StartupError(f"[tls] cannot use the certificate: {describe(e)}") from None
        # LMDB must be opened after twistd forks (daemon mode): here, not in
        # makeService.
        self.env = IndexEnvironment(settings.path("index"), reactor=self.ctx.reactor, on_commit=index_write)
        self.env.open()
        self.env.start_writer()
        reactor = self.ctx.reactor
        bus = self.shared.bus
        directory = Directory(self.env, settings)
        # The directory classifies recipients from the first event on.
        audit = AuditLog(settings, user_directory=directory)
        store = MailStore(self.env, settings, directory, reactor, bus=bus)
        portal = make_portal(directory, store, settings, reactor, failures=self.shared.login_failures)
        # Every worker enqueues; only the leader's runner sends.  A worker
        # that queues mail tells the leader at once (QUEUE_KICK).
        # Redirects rewrite the envelope sender (SRS); the queue sends their
        # DSNs back to the original sender.
        srs = SRS(load_secret(settings.path(SRS_SECRET)))
        queue = DeliveryQueue(self.env, settings, store, directory, reactor, audit=audit,
                              enqueued=None if bus is None else (lambda: bus.broadcast(QUEUE_KICK)),
                              sender_origin=srs.reverse)
        if bus is not None:
            bus.register(QUEUE_KICK, lambda payload: queue.kick())
        self.protection = build_protection(settings, self.env, directory, store, reactor, audit, srs=srs)
        pipeline = self.protection.pipeline
        # Filled once, here: the context itself stays as built.
        core = self.ctx.core
        core.audit, core.directory, core.store = audit, directory, store
        core.portal, core.queue, core.pipeline = portal, queue, pipeline
        core.sieve_scripts = SieveScripts(self.env, write=self.env.write)
        if bus is not None:
            bus.open()
        store.start()
        service.Service.startService(self)
        self.leader.start()
        self._log.info("xmail core started, data in {data_dir}", data_dir=os.path.abspath(settings.data_dir))

    def start_singletons(self) -> None:
        """The jobs exactly one process of a data directory runs: the
        outbound queue runner, the Recycle purge, audit log pruning."""
        if self.singletons or not self.running:
            return
        self.singletons = True
        self.ctx.audit.start(self.ctx.reactor, self.ctx.directory)  # log pruning timer
        if self.ctx.queue is not None:
            self.ctx.queue.start()
        self._purge = task.LoopingCall(self._purge_recycle)
        self._purge.clock = self.ctx.reactor
        self._purge.start(RECYCLE_PURGE_INTERVAL, now=True)
        # Spam digests that are due (README "Mail protection").
        self._digest = task.LoopingCall(self._send_digests)
        self._digest.clock = self.ctx.reactor
        self._digest.start(DIGEST_INTERVAL, now=False)

    def _send_digests(self) -> Any:
        d = self.protection.digest.send_due()
        d.addErrback(lambda f: self._log.failure("spam digests failed", f))
        return d

    def _purge_recycle(self) -> Any:
        return self._purge_recycle_at(None)

    def _purge_recycle_at(self, now: float | None) -> Any:
        d = self.ctx.store.purge_expired(now)

        def purged(count: int) -> None:
            if count and self.ctx.audit is not None:
                self.ctx.audit.mail("purged", folder="Recycle", count=count, result="ok")

        d.addCallback(purged)
        d.addErrback(lambda f: self._log.failure("recycle purge failed", f))
        return d

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        service.Service.stopService(self)
        self.singletons = False
        for loop in (self._purge, self._digest):
            if loop is not None and loop.running:
                loop.stop()
        if self.ctx.queue is not None:
            yield defer.maybeDeferred(self.ctx.queue.stop)
        # Leadership goes once the runner has nothing in flight: the next
        # leader's runner never overlaps this one.
        self.leader.stop()
        if self.ctx.audit is not None:
            self.ctx.audit.stop()
        if self.ctx.store is not None:
            yield defer.maybeDeferred(self.ctx.store.stop)
        if self.shared.bus is not None:
            self.shared.bus.close()
        if self.env is not None:
            # close() drains the writer queue (commits what was accepted) and
            # joins the writer thread: not on the reactor thread.
            yield deferToThread(self.env.close)
            self.env = None


class ListenerService(service.Service):
    """One protocol on one or more endpoint descriptions.

    Binds in privilegedStartService so that `twistd --uid` can bind ports
    below 1024 before dropping privileges.
    """

    _log = Logger()

    def __init__(self, name: str, ctx: ServerContext, descriptions: tuple[str, ...], factory: Any,
                 implicit_tls: bool):
        self.setName(name)
        self.ctx = ctx
        self.descriptions = descriptions
        self.factory = factory
        self.implicit_tls = implicit_tls
        self.ports: list[IListeningPort] = []
        self._bound = False
        self._failures: list[str] | None = None  # while _bind collects listen faults

    def privilegedStartService(self) -> None:
        self._bind()
        service.Service.privilegedStartService(self)

    def startService(self) -> None:
        self._bind()
        service.Service.startService(self)

    def _bind(self) -> None:
        if self._bound:
            return
        self._bound = True
        share = self.ctx.accept_share
        factory = count_connections(self.factory, self.name, share)
        # Inside TLS, so that an implicit-TLS client reads the refusal.
        factory = limits.peer_limited(factory, self.ctx, self.name)
        if self.implicit_tls:
            # ServerTLS reads its files on first use (CoreService, after
            # twistd --uid dropped privileges), not here.
            factory = TLSMemoryBIOFactory(self.ctx.tls, False, factory)
        make = endpoints.serverFromString if share is None else share.endpoint
        self._failures = failures = []
        for description in self.descriptions:
            try:
                endpoint = make(self.ctx.reactor, description)
            except (ValueError, TypeError, KeyError, IndexError) as e:
                failures.append(f"listener {self.name}: cannot use {description!r}: {e}")
                continue
            d = endpoint.listen(factory)
            d.addCallback(self._listening, description)
            d.addErrback(self._failed, description)
        self._failures = None
        if failures:
            # TCP and adopted (systemd) endpoints answer at once: the first
            # fault is the operator's one line (issue 16).
            if self.ctx.reactor.running:
                stop_with_error(failures[0], self.ctx.reactor)
            else:
                raise StartupError(failures[0])

    def _listening(self, port: IListeningPort, description: str) -> None:
        self.ports.append(port)
        address = port.getHost()
        if isinstance(getattr(address, "port", None), int):
            self.ctx.bound_ports.setdefault(self.name, address.port)
        self._log.info("{name} listening on {address}", name=self.name, address=port.getHost())

    def _failed(self, failure: Any, description: str) -> None:
        # A listener that cannot bind is fatal: an operator must see it.
        line = bind_error(self.name, description, failure.value)
        if self._failures is not None:
            self._failures.append(line)  # _bind reports it
        else:  # a listen that answered later: stop the daemon
            stop_with_error(line, self.ctx.reactor)

    def stopService(self) -> Any:
        service.Service.stopService(self)
        ports, self.ports = self.ports, []
        self.ctx.bound_ports.pop(self.name, None)
        self._bound = False
        d = defer.gatherResults([defer.maybeDeferred(p.stopListening) for p in ports])
        # The last port closed: the factory's doStop has told each session
        # to end after its current command.
        d.addCallback(lambda _: self.drain())
        return d

    def drain(self) -> defer.Deferred[None] | None:
        """Fires when the factory's sessions (SMTP, POP3, IMAP keep a set)
        have finished their commands and closed: at most
        SESSION_DRAIN_TIMEOUT, or SESSION_LINGER once all said goodbye.
        Polled: protocol-neutral, and only while stopping."""
        sessions = getattr(self.factory, "sessions", None)
        if not isinstance(sessions, set) or not sessions:
            return None
        reactor = self.ctx.reactor
        started = reactor.seconds()
        all_closing: list[float] = []  # when every session had said goodbye
        done: defer.Deferred[None] = defer.Deferred()

        def check() -> None:
            now = reactor.seconds()
            if not sessions:
                done.callback(None)
                return
            if not all_closing and all(getattr(p.transport, "disconnecting", True) for p in sessions):
                all_closing.append(now)
            if all_closing and now - all_closing[0] >= SESSION_LINGER:
                done.callback(None)
                return
            if now - started >= SESSION_DRAIN_TIMEOUT:
                self._log.warn("{name}: {count} sessions still busy after {seconds:.0f} s of drain, "
                               "cutting them", name=self.name, count=len(sessions),
                               seconds=SESSION_DRAIN_TIMEOUT)
                done.callback(None)
                return
            reactor.callLater(DRAIN_POLL, check)

        check()
        return done


class XmailService(service.MultiService):
    """The whole server; `ctx` and `listeners` are there for tests."""

    def __init__(self, settings: Settings, reactor: Any = None, *, shared: SharedTables | None = None):
        """shared: the tables a worker shares with the others
        (xmail.workers.runtime); None: one process on its own."""
        super().__init__()
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        shared = shared or SharedTables()
        self.settings = settings
        caps = settings.limits
        self.ctx = ServerContext(
            settings=settings, reactor=reactor,
            # Reads its files on first use, after twistd --uid (CoreService).
            tls=tls.ServerTLS(settings),
            # "is None": a table with no entries yet is falsy.
            connections=(limits.UserConnections(caps.max_connections_per_user)
                         if shared.connections is None else shared.connections),
            peer_connections=(limits.PeerConnections(caps.max_connections_per_ip)
                              if shared.peer_connections is None else shared.peer_connections),
            # One per server, shared by the 587 and 465 listeners (and, from
            # worker_tables, by every worker: issue 14).
            send_counter=(DailySendCounter(caps.daily_send_limit)
                          if shared.send_counter is None else shared.send_counter),
            recent_claims=shared.recent_claims,
            accept_share=shared.accept_share)
        self._previous_sighup: Any = None
        self.core = CoreService(self.ctx, shared)
        self.core.setServiceParent(self)
        self.listeners: dict[str, ListenerService] = {}
        for name, (make_factory, kwargs, implicit_tls) in PROTOCOLS.items():
            descriptions = getattr(settings.listen, name)
            if not descriptions:
                continue
            factory = make_factory(self.ctx, implicit_tls=implicit_tls, **kwargs)
            listener = ListenerService(name, self.ctx, descriptions, factory, implicit_tls)
            listener.setServiceParent(self)
            self.listeners[name] = listener

    def privilegedStartService(self) -> None:
        # Only twistd and the tac call this (tests call startService), so
        # the process-wide umask changes only in a real daemon: files and
        # directories the server creates are the service user's alone,
        # whatever mode a library asks for (LMDB creates its files 0644).
        # An operator's stricter --umask stays.
        os.umask(os.umask(0o077) | 0o077)
        # The reactor thread hands work to the store's file and index threads
        # for every message; the default 5 ms GIL switch interval makes it
        # wait for them (about 15% of SMTP throughput, bench/smtp_bench.py).
        sys.setswitchinterval(0.001)
        super().privilegedStartService()

    def startService(self) -> None:
        super().startService()
        # Signal handlers belong to the main thread; the tests' reactor
        # runs in another one and reloads by calling reload_tls().
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            self._previous_sighup = signal.signal(signal.SIGHUP, self._on_sighup)

    @defer.inlineCallbacks
    def stopService(self) -> Any:
        """Listeners first, and their sessions drained (ListenerService.drain),
        then the core: a session finishing its command (a FETCH, a QUIT's
        expunge) still has its store and index."""
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        service.Service.stopService(self)
        others = [child for child in reversed(list(self)) if child is not self.core]
        yield defer.DeferredList([defer.maybeDeferred(child.stopService) for child in others],
                                 consumeErrors=True)
        yield defer.maybeDeferred(self.core.stopService)

    def _on_sighup(self, signum: int, frame: Any) -> None:
        # Nothing else here: a signal handler may interrupt code holding a
        # lock (logging); the reactor runs the reload.
        self.ctx.reactor.callFromThread(self.reload_tls)

    def reload_tls(self) -> bool:
        """Serve the certificate files as they are now to new connections
        (SIGHUP); False, and the old certificate stays, when they are bad."""
        return self.ctx.tls.reload()

    def port(self, name: str) -> int:
        """The first bound TCP port of a listener (tests use port 0)."""
        return self.listeners[name].ports[0].getHost().port


def makeService(settings: Settings, reactor: Any = None) -> XmailService:
    # Before twistd drops privileges (--uid): package data the service user
    # may not be able to read later (a Python under /root).
    load_package_data()
    return XmailService(settings, reactor)
