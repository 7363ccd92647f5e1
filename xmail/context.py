"""What every protocol factory is handed: settings and the shared services.

Protocols reach mail and users only through the interfaces named here
(xmail.store.interfaces, xmail.auth.interfaces, xmail.queue.interfaces).

`ServerContext` is built once, by XmailService, and is frozen: nothing
assigns into it afterwards (issue 14: workers used to patch live objects).
Two things cannot exist when it is built, and each lives in an explicit
holder the service owns and fills:

- `CoreServices`: the store, directory, portal, audit log and queue.  LMDB
  must be opened after twistd forks, so CoreService.startService builds
  them and fills the holder once; a factory reads them at connection time
  (`ctx.store` reads `ctx.core.store`), never at construction.
- `bound_ports`: a listener's real port is known after it listens.

What the worker processes of one data directory share (`SharedTables`) is
handed in at construction; None fields are this process's own.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from xmail.config import Settings

if TYPE_CHECKING:
    from twisted.cred.portal import Portal

    from xmail.auth.interfaces import IAuditLog, IDirectory, IFailureCounts
    from xmail.filter.interfaces import IDeliveryPipeline
    from xmail.limits import PeerConnections, UserConnections
    from xmail.queue.interfaces import IOutboundQueue
    from xmail.sieve.interfaces import ISieveScripts
    from xmail.store.interfaces import IMessageStore


class SendCounter(Protocol):
    """Messages each user submitted today (limits.daily_send_limit): one per
    server (xmail.protocols.smtp.limits.DailySendCounter) or one table for
    every worker (xmail.workers.shared.SharedDailySendCounter)."""

    limit: int

    def reached(self, user: str) -> bool: ...

    def record(self, user: str, messages: int = 1) -> None: ...


class RecentClaims(Protocol):
    """IMAP \\Recent claims (xmail.protocols.imap.sync.RecentTracker): this
    process's memory, or the workers' table (xmail.workers.shared)."""

    def update(self, key: str, change: Callable[[int | None], int | None]) -> int | None: ...


class AcceptShare(Protocol):
    """The workers' share of the connections (xmail.workers.balance.
    ConnectionShare): makes the listening endpoints, told of every
    connection opened and closed."""

    def endpoint(self, reactor: Any, description: str) -> Any: ...

    def opened(self) -> None: ...

    def closed(self) -> None: ...

    def start(self) -> None: ...

    def stop(self) -> None: ...


class Bus(Protocol):
    """The cross-process notification bus (xmail.workers.bus.NotifyBus):
    best-effort datagrams of one kind byte to the other workers."""

    def register(self, kind: bytes, handler: Any) -> None: ...

    def broadcast(self, kind: bytes, payload: bytes = b"") -> None: ...


@dataclass(frozen=True, slots=True)
class SharedTables:
    """What the processes of one data directory share, built before the
    server (xmail.workers.runtime.worker_tables) and handed to
    XmailService at construction; None fields are this process's own
    (one process, tests).  Nothing patches them into a live context."""

    connections: UserConnections | None = None  # sessions per user
    peer_connections: PeerConnections | None = None  # per client address
    send_counter: SendCounter | None = None
    recent_claims: RecentClaims | None = None
    accept_share: AcceptShare | None = None
    login_failures: IFailureCounts | None = None  # the login throttle's counts (xmail.auth.throttle)
    bus: Bus | None = None  # change notification and queue kicks between the workers


@dataclass(slots=True)
class CoreServices:
    """The holder CoreService fills once the index is open (after twistd
    forks); None until then.  Owned by the service: protocols only read."""

    store: IMessageStore | None = None
    directory: IDirectory | None = None
    portal: Portal | None = None  # avatar: xmail.auth.interfaces.IMailAccount
    audit: IAuditLog | None = None
    queue: IOutboundQueue | None = None  # remote recipients
    pipeline: IDeliveryPipeline | None = None  # mail protection (xmail.filter); None: none
    sieve_scripts: ISieveScripts | None = None  # filter rules (xmail.sieve): ManageSieve's store


@dataclass(frozen=True, slots=True)
class ServerContext:
    settings: Settings
    reactor: Any  # IReactorTCP + IReactorTime (a task.Clock in unit tests)
    core: CoreServices = field(default_factory=CoreServices)
    tls: Any = None  # xmail.tls.ServerTLS (CertificateOptions-like) for STARTTLS/STLS; None: no TLS
    # listener name -> first bound TCP port (a "tcp:0" or systemd listener has
    # no port in its config; auto-configuration advertises the real one).
    # A dict the listeners fill: the context itself is never assigned.
    bound_ports: dict[str, int] = field(default_factory=dict)
    connections: UserConnections | None = None  # sessions per user and protocol
    peer_connections: PeerConnections | None = None  # connections per client address
    send_counter: SendCounter | None = None  # None: each MailAgent keeps its own (unit tests)
    # IMAP \Recent claims (xmail.protocols.imap.sync.RecentTracker): None is
    # this process's memory; workers share a table (xmail.workers.shared).
    recent_claims: RecentClaims | None = None
    # Workers: their share of the connections; None: one process.
    accept_share: AcceptShare | None = None

    # The core services, read at connection time through the holder.
    @property
    def store(self) -> IMessageStore | None:
        return self.core.store

    @property
    def directory(self) -> IDirectory | None:
        return self.core.directory

    @property
    def portal(self) -> Portal | None:
        return self.core.portal

    @property
    def audit(self) -> IAuditLog | None:
        return self.core.audit

    @property
    def queue(self) -> IOutboundQueue | None:
        return self.core.queue

    @property
    def pipeline(self) -> IDeliveryPipeline | None:
        return self.core.pipeline

    @property
    def sieve_scripts(self) -> ISieveScripts | None:
        return self.core.sieve_scripts

    def is_loopback(self, host: str) -> bool:
        """May this client use plaintext auth without TLS?  Loopback clients
        may, unless [server] loopback_plaintext_auth is off.  Only 127.0.0.1
        and ::1 count: tests bind to 127.0.0.2 to play a remote client."""
        if not self.settings.server.loopback_plaintext_auth:
            return False
        return host in ("127.0.0.1", "::1", "::ffff:127.0.0.1")
