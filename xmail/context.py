"""What every protocol factory is handed: settings and the shared services.

Protocols reach mail and users only through the interfaces named here
(xmail.store.interfaces, xmail.auth.interfaces).  The store, directory and
portal are filled in by the service when it starts (after twistd forks), so a
factory reads them at connection time, never at construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from xmail.config import Settings


@dataclass(frozen=True, slots=True)
class SharedTables:
    """What the processes of one data directory share, built before the
    server (xmail.workers.runtime.worker_tables) and handed to
    XmailService at construction; None fields are this process's own
    (one process, tests).  Nothing patches them into a live context."""

    connections: Any = None  # xmail.limits.UserConnections interface: sessions per user
    peer_connections: Any = None  # xmail.limits.PeerConnections interface: per client address
    send_counter: Any = None  # DailySendCounter interface: reached(user), record(user)
    recent_claims: Any = None  # RecentTracker store: update(key, change)
    accept_share: Any = None  # xmail.workers.balance.ConnectionShare: endpoint(), start(), stop()


@dataclass
class ServerContext:
    settings: Settings
    reactor: Any
    store: Any = None  # xmail.store.interfaces.IMessageStore
    directory: Any = None  # xmail.auth.interfaces.IDirectory
    portal: Any = None  # twisted.cred.portal.Portal (avatar: IMailAccount)
    audit: Any = None  # xmail.auth.interfaces.IAuditLog
    tls: Any = None  # twisted.internet.ssl.CertificateOptions for STARTTLS/STLS
    queue: Any = None  # xmail.queue outbound queue (remote recipients)
    # listener name -> first bound TCP port (a "tcp:0" or systemd listener has
    # no port in its config; auto-configuration advertises the real one).
    bound_ports: dict[str, int] = field(default_factory=dict)
    connections: Any = None  # xmail.limits.UserConnections: sessions per user and protocol
    peer_connections: Any = None  # xmail.limits.PeerConnections: connections per client address
    send_counter: Any = None  # messages each user submitted today (daily_send_limit)
    # IMAP \Recent claims (xmail.protocols.imap.sync.RecentTracker): None is
    # this process's memory; workers share a table (xmail.workers.shared).
    recent_claims: Any = None
    # Workers: xmail.workers.balance.ConnectionShare, told of every connection
    # opened and closed and making the listening endpoints; None: one process.
    accept_share: Any = None

    def is_loopback(self, host: str) -> bool:
        """May this client use plaintext auth without TLS?  Loopback clients
        may, unless [server] loopback_plaintext_auth is off.  Only 127.0.0.1
        and ::1 count: tests bind to 127.0.0.2 to play a remote client."""
        if not self.settings.server.loopback_plaintext_auth:
            return False
        return host in ("127.0.0.1", "::1", "::ffff:127.0.0.1")
