# -*- test-case-name: tests.ops.test_metrics -*-
"""Prometheus metrics: one registry per process and small recording functions.

Anything may call these from the reactor thread or a worker thread
(prometheus_client's metrics take a lock of their own); each call is a dict
lookup and an addition, so protocols may call them on every command.

    metrics.connection_opened("imap") / metrics.connection_closed("imap")
    metrics.login("imap", "ok")                      (AuditLog.login calls it)
    metrics.mail_event("received", recipients, size) (AuditLog.mail calls it)
    metrics.command_latency("imap", "FETCH", seconds)
    metrics.track("smtp", verb, handler_result, started)  (a Deferred or a value)
    metrics.index_write(seconds)                     (IndexEnvironment on_commit)

With several workers (xmail.workers) the supervisor sets
PROMETHEUS_MULTIPROC_DIR (data_dir/run/metrics) for them before they start:
prometheus_client then keeps each worker's values in a file of its own, and
/metrics of any worker sums every worker's (dead ones' counters included),
so a scrape no longer depends on which worker accepted it.

Label values that come from clients (command names) are bounded: at most
MAX_COMMANDS distinct names per protocol, anything else counts as "OTHER",
so a client sending random verbs cannot grow the registry.
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from twisted.internet.defer import Deferred

MAX_COMMANDS = 64  # distinct command labels per protocol
_COMMAND = re.compile(r"[A-Z][A-Z0-9_-]{0,19}")
_LOGIN_RESULTS = frozenset({"ok", "fail", "disabled", "throttled"})
_MAIL_EVENTS = frozenset({"received", "sent", "deleted", "expunged", "recycled", "purged", "bounced"})

REGISTRY = CollectorRegistry(auto_describe=True)

CONNECTIONS = Counter("xmail_connections", "Connections accepted", ["protocol"], registry=REGISTRY)
CONNECTIONS_OPEN = Gauge("xmail_connections_open", "Connections open now", ["protocol"],
                         registry=REGISTRY, multiprocess_mode="livesum")
LOGINS = Counter("xmail_logins", "Login attempts by result (ok, fail, disabled, throttled)",
                 ["protocol", "result"], registry=REGISTRY)
MAIL_EVENTS = Counter("xmail_mail_events", "Mail log events (received, sent, bounced, expunged ...)",
                      ["event"], registry=REGISTRY)
DELIVERIES = Counter("xmail_deliveries", "Messages accepted for delivery, counted per recipient",
                     registry=REGISTRY)
DELIVERED_BYTES = Counter("xmail_delivered_bytes", "Bytes of messages accepted for delivery",
                          registry=REGISTRY)
COMMAND_LATENCY = Histogram(
    "xmail_command_duration_seconds", "Time from a command's arrival to its final reply",
    ["protocol", "command"], registry=REGISTRY,
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0))
INDEX_WRITE = Histogram(
    "xmail_index_commit_duration_seconds", "Time of one LMDB group commit (jobs + fsync)",
    registry=REGISTRY,
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5))

_commands_lock = threading.Lock()
_commands: dict[str, set[str]] = {}


def _label(value: str, limit: int = 32) -> str:
    text = str(value)[:limit]
    return "".join(c if c.isalnum() or c in "_-." else "_" for c in text) or "unknown"


def connection_opened(protocol: str) -> None:
    CONNECTIONS.labels(_label(protocol)).inc()
    CONNECTIONS_OPEN.labels(_label(protocol)).inc()


def connection_closed(protocol: str) -> None:
    CONNECTIONS_OPEN.labels(_label(protocol)).dec()


def login(protocol: str, result: str) -> None:
    LOGINS.labels(_label(protocol), result if result in _LOGIN_RESULTS else "other").inc()


def mail_event(event: str, recipients: int = 0, size: int = 0) -> None:
    MAIL_EVENTS.labels(event if event in _MAIL_EVENTS else "other").inc()
    if event == "received" and recipients > 0:
        DELIVERIES.inc(recipients)
        DELIVERED_BYTES.inc(max(size, 0) * recipients)


def _command_label(protocol: str, command: str) -> str:
    name = command.upper() if isinstance(command, str) else ""
    if not _COMMAND.fullmatch(name):
        return "OTHER"
    with _commands_lock:
        known = _commands.setdefault(protocol, set())
        if name not in known:
            if len(known) >= MAX_COMMANDS:
                return "OTHER"
            known.add(name)
    return name


# (protocol, command as the client sent it) -> its histogram child: labels()
# (sanitising, a lock, a dict of children) costs twice the observation itself
# and ran on every command.  Bounded like the labels: names longer than a
# label can be are not kept, and at most _MAX_CHILDREN entries.
_latency_children: dict[tuple[str, str], Any] = {}
_MAX_CHILDREN = 8 * MAX_COMMANDS


def command_latency(protocol: str, command: str, seconds: float) -> None:
    key = (protocol, command)
    child = _latency_children.get(key)
    if child is None:
        label = _label(protocol)
        child = COMMAND_LATENCY.labels(label, _command_label(label, command))
        if isinstance(command, str) and len(command) <= 20 and len(_latency_children) < _MAX_CHILDREN:
            _latency_children[key] = child
    child.observe(max(seconds, 0.0))


clock = time.monotonic  # the clock command latencies are measured with


def track(protocol: str, command: str, result: Any, started: float) -> Any:
    """Record the latency of a command that began at `started` (metrics.clock())
    when `result` is done: at once for a plain value, when it fires for a
    Deferred.  Returns `result` unchanged, so a dispatcher wraps its call:

        started = metrics.clock()
        return metrics.track("smtp", verb, handler(self, argument), started)
    """
    if isinstance(result, Deferred):
        def done(outcome: Any) -> Any:
            command_latency(protocol, command, clock() - started)
            return outcome

        return result.addBoth(done)
    command_latency(protocol, command, clock() - started)
    return result


def index_write(seconds: float) -> None:
    INDEX_WRITE.observe(max(seconds, 0.0))


class timed:
    """`with metrics.timed("pop3", "RETR"): ...` for synchronous handlers."""

    def __init__(self, protocol: str, command: str):
        self.protocol = protocol
        self.command = command

    def __enter__(self) -> timed:
        self.start = time.monotonic()
        return self

    def __exit__(self, *exc: Any) -> None:
        command_latency(self.protocol, self.command, time.monotonic() - self.start)


class QueueCollector(Collector):
    """Queue length and the age of the oldest queued message, read from the
    outbound queue when scraped.

    Uses `queue.stats() -> (messages, oldest_created or None)` when the queue
    has it, else walks the spool records in one short read transaction.  The
    /metrics resource renders in a thread, so this never runs on the reactor.
    """

    def __init__(self, ctx: Any, clock: Any = time.time):
        self.ctx = ctx
        self.clock = clock

    def describe(self) -> list[Any]:
        return []

    def _stats(self) -> tuple[int, float | None] | None:
        queue = getattr(self.ctx, "queue", None)
        if queue is None:
            return None
        stats = getattr(queue, "stats", None)
        if callable(stats):
            return stats()
        spool, env = getattr(queue, "spool", None), getattr(queue, "env", None)
        if spool is None or env is None:
            return None
        count, oldest = 0, None
        with env.read() as txn:
            for message in spool.all(txn):
                count += 1
                if oldest is None or message.created < oldest:
                    oldest = message.created
        return count, oldest

    def collect(self) -> Iterator[Any]:
        try:
            stats = self._stats()
        except Exception:
            stats = None  # the index is closing: nothing to report this time
        if stats is None:
            return
        count, oldest = stats
        yield GaugeMetricFamily("xmail_queue_messages", "Messages in the outbound queue", value=count)
        age = 0.0 if oldest is None else max(0.0, self.clock() - oldest)
        yield GaugeMetricFamily("xmail_queue_oldest_age_seconds",
                                "Age of the oldest message in the outbound queue", value=age)


class _ProcessMetrics(Collector):
    """The process-wide REGISTRY, re-exported into a server's own registry."""

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Iterator[Any]:
        yield from REGISTRY.collect()


MULTIPROCESS_ENV = "PROMETHEUS_MULTIPROC_DIR"


def server_registry(ctx: Any) -> CollectorRegistry:
    """What /metrics of one server shows: the process metrics (or, in a
    worker, every worker's summed) and the outbound queue."""
    registry = CollectorRegistry(auto_describe=False)
    shared = os.environ.get(MULTIPROCESS_ENV)
    if shared:
        from prometheus_client.multiprocess import MultiProcessCollector

        MultiProcessCollector(registry, path=shared)
    else:
        registry.register(_ProcessMetrics())
    registry.register(QueueCollector(ctx))
    return registry


def prepare_shared_dir(path: str) -> None:
    """An empty directory for the workers' metric files (the supervisor, at
    start): values of a previous run must not add to this one's."""
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(path, mode=0o700)


def worker_gone(path: str, pid: int) -> None:
    """A worker died: its live gauges (connections open) stop counting; its
    counters stay in the totals."""
    from prometheus_client.multiprocess import mark_process_dead

    try:
        mark_process_dead(pid, path)
    except OSError:
        pass


class ConnectionCountingFactory:
    """A listening factory that counts the connections of one listener.

    It hands out the wrapped factory's own protocol (no wrapper between the
    protocol and its transport, so STARTTLS and ISSLTransport checks see the
    real transport) and hooks that protocol's connectionLost.  Anything else
    is the wrapped factory's; factories that wrap this one or that this one
    wraps (connection caps, TLS) compose in any order.
    """

    def __init__(self, wrapped: Any, protocol: str, observer: Any = None):
        self.wrapped = wrapped
        self.protocol_name = protocol
        self.observer = observer  # .opened() and .closed() too (xmail.workers.balance)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.wrapped, name)

    def doStart(self) -> None:
        self.wrapped.doStart()

    def doStop(self) -> None:
        self.wrapped.doStop()

    def buildProtocol(self, addr: Any) -> Any:
        protocol = self.wrapped.buildProtocol(addr)
        if protocol is None:  # refused (e.g. a connection cap)
            return None
        name, observer = self.protocol_name, self.observer
        connection_opened(name)
        if observer is not None:
            observer.opened()
        original = protocol.connectionLost
        closed: list[bool] = []

        def connectionLost(reason: Any) -> Any:
            if not closed:
                closed.append(True)
                connection_closed(name)
                if observer is not None:
                    observer.closed()
            return original(reason)

        protocol.connectionLost = connectionLost
        return protocol


def count_connections(factory: Any, protocol: str, observer: Any = None) -> Any:
    """`factory` counted under `protocol` (the listener name) in
    xmail_connections_total and xmail_connections_open, and reported to
    `observer` (see ConnectionCountingFactory)."""
    from twisted.internet.interfaces import IProtocolFactory
    from zope.interface import directlyProvides, providedBy

    counting = ConnectionCountingFactory(factory, protocol, observer)
    directlyProvides(counting, providedBy(factory) or IProtocolFactory)
    return counting
