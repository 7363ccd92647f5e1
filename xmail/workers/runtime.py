# -*- test-case-name: tests.workers.test_workers -*-
"""What a worker adds to the ordinary XmailService.

`worker_tables` builds what XmailService is constructed with: shared
connection caps, daily send counter and login failure counts, \\Recent
claims, the notification bus between the workers (xmail.workers.bus: the
store's change notification and the queue kick), the share of the
connections that decides when this worker accepts (xmail.workers.balance).
Nothing is patched into a live object afterwards (issue 14); the leader
election for the singleton jobs is the core's own (xmail.db.leader), the
same in one process as in N.  `started` runs after startService: the
share's heartbeat (only a worker that listens is one the others wait for).
"""

from __future__ import annotations

import os
from typing import Any

from twisted.logger import Logger

from xmail.context import SharedTables
from xmail.workers import balance, bus, shared

_log = Logger()


def worker_tables(settings: Any, boot: dict[str, Any], reactor: Any) -> SharedTables:
    """The tables this worker shares with the others, for XmailService."""
    run_dir = settings.path("run")
    row = boot["number"]
    limits = settings.limits
    peers = shared.SlotCounters(os.path.join(run_dir, shared.PEER_CONNECTIONS), row)
    users = shared.SlotCounters(os.path.join(run_dir, shared.USER_CONNECTIONS), row)
    share = balance.ConnectionShare(os.path.join(run_dir, shared.WORKER_LOAD), row, reactor)
    # Before the listeners stop: a draining worker is not one to wait for.
    reactor.addSystemEventTrigger("before", "shutdown", share.stop)
    return SharedTables(
        peer_connections=shared.SharedPeerConnections(limits.max_connections_per_ip, peers),
        connections=shared.SharedUserConnections(limits.max_connections_per_user, users),
        # One count per user across the workers (issue 14: each worker kept its own).
        send_counter=shared.SharedDailySendCounter(os.path.join(run_dir, shared.DAILY_SENDS),
                                                   limits.daily_send_limit),
        recent_claims=shared.SharedRecentClaims(os.path.join(run_dir, shared.RECENT_CLAIMS)),
        login_failures=shared.SharedFailureCounts(os.path.join(run_dir, shared.LOGIN_FAILURES),
                                                  float(limits.login_refusal_seconds)),
        bus=bus.NotifyBus(os.path.join(run_dir, "notify"), reactor),
        accept_share=share,
    )


def started(server: Any, boot: dict[str, Any]) -> None:
    """After startService: a restarted worker becomes one the others wait
    for only now: until its listeners are up, its cleared slot lets them
    take every connection."""
    server.ctx.accept_share.start()
    _log.info("worker {number} (pid {pid}) serving", number=boot["number"], pid=os.getpid())
