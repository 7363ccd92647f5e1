# -*- test-case-name: tests.workers.test_workers -*-
"""What a worker adds to the ordinary XmailService.

`worker_tables` builds what XmailService is constructed with: shared
connection caps and daily send counter, \\Recent claims, the share of the
connections that decides when this worker accepts (xmail.workers.balance);
`leader_election` the one election that starts the core's singleton jobs.
`started` runs after startService: the shared login failure counts (the
portal is made by the core), the queue kick between workers, and the
share's heartbeat (only a worker that listens is one the others wait for).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from xmail.context import SharedTables
from xmail.workers import balance, shared
from xmail.workers.leader import LeaderElection

QUEUE_KICK = b"Q"  # notifier datagram kind: "mail was queued, leader please scan"

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
        accept_share=share,
    )


def leader_election(settings: Any, boot: dict[str, Any], reactor: Any) -> Callable[[Callable[[], Any]], Any]:
    """The one election deciding which worker runs the singleton jobs (the
    queue runner among them): CoreService calls it with start_singletons."""
    path = os.path.join(settings.path("run"), "leader.lock")
    return lambda elected: LeaderElection(path, reactor, elected, name=f"worker {boot['number']}")


def started(server: Any, boot: dict[str, Any]) -> None:
    ctx = server.ctx
    settings = ctx.settings
    throttle = getattr(ctx.portal, "throttle", None)
    if throttle is not None:
        throttle.counts = shared.SharedFailureCounts(
            settings.path("run", shared.LOGIN_FAILURES), float(settings.limits.login_refusal_seconds))
    notifier = ctx.store.notifier
    queue = ctx.queue
    if queue is not None:
        # The leader's runner scans on a timer; a kick makes mail queued in
        # any worker leave at once.
        notifier.handlers[QUEUE_KICK] = lambda payload: queue.kick()
        enqueue = queue.enqueue

        def enqueue_and_kick(*args: Any, **kwargs: Any) -> Any:
            d = defer.maybeDeferred(enqueue, *args, **kwargs)

            def kick(queue_id: Any) -> Any:
                notifier.broadcast(QUEUE_KICK)
                return queue_id

            d.addCallback(kick)
            return d

        queue.enqueue = enqueue_and_kick
    # A restarted worker becomes one the others wait for only now: until its
    # listeners are up, its cleared slot lets them take every connection.
    ctx.accept_share.start()
    _log.info("worker {number} (pid {pid}) serving", number=boot["number"], pid=os.getpid())
