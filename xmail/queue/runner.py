# -*- test-case-name: tests.queue.test_runner -*-
"""DeliveryQueue: the outbound queue the core service runs.

The spool (xmail.queue.spool) is the truth: the runner keeps in memory only
what is in flight.  A timer on the injectable `clock` wakes it at the next
due attempt (and every `poll_interval` seconds, which is how it notices
`xmailctl queue retry|delete` made by another process).  Due recipients are
grouped by destination (the domain, or the smarthost); each destination has
up to `max_per_destination` connections, and each connection carries message
after message until the destination has nothing left.

Results are written back through `IndexEnvironment.write` (group commit).
Anything in flight when the process dies is simply due again at the next
start: delivery is at-least-once, never lost.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from twisted.internet import defer, endpoints
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from xmail import tls
from xmail.config import Settings
from xmail.queue import dsn
from xmail.queue.client import (
    CONNECT_TIMEOUT,
    ClientFactory,
    Credentials,
    Envelope,
    ESMTPSession,
    OutboundRecipient,
    Outcome,
    SessionError,
    split_recipients,
)
from xmail.queue.interfaces import IOutboundQueue, QueueRecipient
from xmail.queue.routing import Route, RouteError, Router
from xmail.queue.schedule import RetrySchedule
from xmail.queue.spool import FAILED, QUEUED, SENT, QueuedMessage, RecipientState, Spool, new_id

LOCAL_KEY = "[local]"
MAX_DISPATCH = 2000  # messages taken into memory per scan
REPORT_RETRY = 300.0  # seconds before a DSN that could not be handed off is tried again


@dataclass
class Job:
    """Recipients of one message going to one destination in one transaction."""

    queue_id: str
    indices: list[int]
    addresses: list[str]
    envelope: Envelope | None = None  # None for local delivery


@dataclass(frozen=True)
class ScanReport:
    """What one scan of the spool did, handed to the `scanned` callback:
    the explicit "scan finished" signal tests wait for instead of sleeping
    (that nothing was sent is then a fact of the scan, not of a pause)."""

    now: float  # the clock's time of the scan
    due: int  # messages the spool has due now (in flight or not)
    dispatched: int  # recipients handed to a delivery by this scan
    next_scan: float  # when the timer wakes the runner again


@dataclass
class Destination:
    key: str
    jobs: deque[Job] = field(default_factory=deque)
    workers: int = 0
    sessions: set[ESMTPSession] = field(default_factory=set)
    idle: deque[defer.Deferred[bool]] = field(default_factory=deque)  # connections waiting for work


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


@implementer(IOutboundQueue)
class DeliveryQueue:
    """The durable outbound queue (IOutboundQueue)."""

    _log = Logger()

    def __init__(self, env: Any, settings: Settings, store: Any, directory: Any, reactor: Any, *,
                 clock: Any = None, schedule: RetrySchedule | None = None, resolver: Any = None,
                 max_per_destination: int = 4, poll_interval: float = 5.0, idle_linger: float = 2.0,
                 audit: Any = None, enqueued: Callable[[], None] | None = None,
                 scanned: Callable[[ScanReport], None] | None = None,
                 sender_origin: Callable[[str], str | None] | None = None):
        """Only start() it in the process that won the data directory's
        leader election (xmail.db.leader, CoreService): others only enqueue.
        enqueued: called after each message is durably queued (workers tell
        the leader over their bus, so that it leaves at once).
        scanned: called on the reactor at the end of every scan with its
        ScanReport (tests; nothing in production needs it)."""
        self.env = env
        self.settings = settings
        self.store = store
        self.directory = directory
        # A redirect's SRS envelope sender -> the original sender
        # (xmail.sieve.srs): its DSNs go back to whoever wrote the message.
        self.sender_origin = sender_origin
        self.reactor = reactor
        # Retry timing runs on `clock` (a task.Clock in tests); network I/O
        # and its timeouts always run on the real reactor.
        self.clock = clock if clock is not None else reactor
        self.schedule = schedule or RetrySchedule()
        self.router = Router(settings, resolver)
        self.spool = Spool(env, settings.path("queue"))
        self.max_per_destination = max_per_destination
        self.poll_interval = poll_interval
        self.idle_linger = idle_linger  # seconds an idle connection waits for more mail
        self.audit = audit  # xmail.auth.interfaces.IAuditLog: "sent" / "bounced" events
        self.enqueued = enqueued
        self.scanned = scanned
        self._destinations: dict[str, Destination] = {}
        self._in_flight: set[tuple[str, int]] = set()
        self._busy: dict[str, int] = {}  # queue id -> recipients in flight
        self._reporting: set[str] = set()
        self._workers: set[defer.Deferred[Any]] = set()  # everything stop() waits for
        self._remote: set[defer.Deferred[Any]] = set()  # connections stop() cancels
        self._timer: Any = None
        self._scanned_since_start = False
        self._kick_pending = False
        self._running = False

    # -- IOutboundQueue ----------------------------------------------------------
    def start(self) -> None:
        os.makedirs(self.spool.directory, mode=0o700, exist_ok=True)
        self._in_flight.clear()
        self._busy.clear()
        self._running = True
        self._scanned_since_start = False
        self._recover()
        self.kick()

    def _recover(self) -> None:
        """What a runner that starts delivering picks up from a crash: files
        without a record, and DSNs decided but not yet handed off."""
        self._in_thread(self.spool.sweep_orphans).addErrback(
            lambda f: self._log.failure("queue orphan sweep failed", f))
        with self.env.read() as txn:
            pending = [m.id for m in self.spool.all(txn) if any(r.report for r in m.recipients)]
        for queue_id in pending:
            self._send_reports(queue_id)

    def stop(self) -> Any:
        self._running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        # What is in flight stays due in the spool and is retried at the next
        # start; a message the peer took just now may go twice, never zero times.
        for destination in list(self._destinations.values()):
            destination.jobs.clear()
            while destination.idle:
                destination.idle.popleft().callback(False)
            for session in list(destination.sessions):
                if session.client.transport is not None:
                    session.client.transport.abortConnection()
        for d in list(self._remote):
            d.cancel()  # DNS lookups and connection attempts
        workers = list(self._workers)
        # The leader lock (CoreService) goes only once nothing of ours is in
        # flight any more.
        return defer.DeferredList(workers, consumeErrors=True).addCallback(lambda _: None)

    @defer.inlineCallbacks
    def enqueue(self, mail_from: str, recipients: list[QueueRecipient], message_path: str | bytes, *,
                envid: str | None = None, ret: str | None = None) -> Any:
        """-> Deferred[str]: the queue id, once file and record are durable.

        message_path may also be the message itself as bytes (DSNs)."""
        if not recipients:
            raise ValueError("no recipients to queue")
        queue_id = new_id()
        size = yield self._in_thread(self.spool.write_message, queue_id, message_path)
        now = self.clock.seconds()
        message = QueuedMessage(
            id=queue_id, mail_from=mail_from, created=now, size=size, envid=envid,
            ret=ret.upper() if ret else None,
            recipients=[
                RecipientState(address=r.address, notify=tuple(n.upper() for n in r.notify),
                               orcpt=r.orcpt, next_attempt=now)
                for r in recipients
            ],
        )
        try:
            yield self.env.write(lambda txn: self.spool.put(txn, message))
        except BaseException:
            yield self._in_thread(self.spool.remove_message, queue_id)
            raise
        self._log.info("queued {id} from <{sender}> to {count} recipient(s), {size} octets",
                       id=queue_id, sender=mail_from, count=len(recipients), size=size)
        self.kick()
        if self.enqueued is not None:
            self.enqueued()
        return queue_id

    def stats(self) -> tuple[int, float | None]:
        """(messages queued, arrival time of the oldest or None), for the
        metrics endpoint; one short read transaction, safe in any thread."""
        with self.env.read() as txn:
            return self.spool.stats(txn)

    # -- scheduling ----------------------------------------------------------------
    def kick(self) -> None:
        """Look for due mail soon (coalesced; runs on the reactor)."""
        if self._running and not self._kick_pending:
            self._kick_pending = True
            self.reactor.callLater(0, self._scan)

    def _scan(self) -> None:
        self._kick_pending = False
        if not self._running:
            return
        now = self.clock.seconds()
        try:
            with self.env.read() as txn:
                ids, next_when = self.spool.due(txn, now)
                due = len(ids)
                # A message with recipients in flight waits for them (their
                # results kick a new scan); this keeps a scan cheap with a
                # big backlog, and memory bounded.
                ids = [queue_id for queue_id in ids if queue_id not in self._busy][:MAX_DISPATCH]
                messages = [self.spool.get(txn, queue_id) for queue_id in ids]
        except Exception:
            self._log.failure("queue scan failed")
            messages, next_when, due = [], None, 0
        dispatched = 0
        for message in messages:
            if message is not None:
                dispatched += self._dispatch(message, now)
        wake = now + self.poll_interval
        if next_when is not None:
            wake = min(wake, next_when)
        if not self._scanned_since_start:
            # One line per start of the delivering process: what a restart
            # found in the spool (and the tests' "scan finished" signal).
            self._scanned_since_start = True
            self._log.info("queue scanned after start: {due} due, next scan in {wait:.0f} s",
                           due=len(messages), wait=max(0.0, wake - now))
        self._schedule_scan(now, wake)
        if self.scanned is not None:
            self.scanned(ScanReport(now, due, dispatched, wake))

    def _schedule_scan(self, now: float, wake: float) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.clock.callLater(max(0.0, wake - now), self._scan)

    def _dispatch(self, message: QueuedMessage, now: float) -> int:
        """Hand the due recipients of message to deliveries; -> how many."""
        groups: dict[str, list[int]] = {}
        for index, r in enumerate(message.recipients):
            if r.state != QUEUED or r.next_attempt > now or (message.id, index) in self._in_flight:
                continue
            domain = _domain(r.address)
            key = LOCAL_KEY if self._is_local(domain) else self.router.destination(domain)
            groups.setdefault(key, []).append(index)
        path = self.spool.path(message.id)
        dispatched = 0
        for key, indices in groups.items():
            dispatched += len(indices)
            if key == LOCAL_KEY:
                self._mark(message.id, indices)
                self._track(self._deliver_locally(message, indices))
                continue
            # A destination key is a domain (or the relay): recipients of
            # different domains never share a transaction.
            by_domain: dict[str, list[int]] = {}
            for index in indices:
                by_domain.setdefault(_domain(message.recipients[index].address), []).append(index)
            for domain_indices in by_domain.values():
                for chunk in split_recipients(domain_indices):
                    envelope = Envelope(
                        mail_from=message.mail_from,
                        recipients=tuple(
                            OutboundRecipient(message.recipients[i].address, message.recipients[i].notify,
                                              message.recipients[i].orcpt)
                            for i in chunk
                        ),
                        path=path, size=message.size, envid=message.envid, ret=message.ret,
                    )
                    self._mark(message.id, chunk)
                    self._add_job(key, Job(message.id, chunk, [r.address for r in envelope.recipients],
                                           envelope))
        return dispatched

    def _is_local(self, domain: str) -> bool:
        if self.directory is None:
            return False
        try:
            return bool(self.directory.is_local_domain(domain))
        except Exception:
            self._log.failure("directory lookup failed for {domain}", domain=domain)
            return False

    def _mark(self, queue_id: str, indices: Sequence[int]) -> None:
        self._in_flight.update((queue_id, i) for i in indices)
        self._busy[queue_id] = self._busy.get(queue_id, 0) + len(indices)

    def _release(self, queue_id: str, indices: Sequence[int]) -> None:
        self._in_flight.difference_update((queue_id, i) for i in indices)
        left = self._busy.get(queue_id, 0) - len(indices)
        if left > 0:
            self._busy[queue_id] = left
        else:
            self._busy.pop(queue_id, None)

    def _track(self, d: defer.Deferred[Any]) -> None:
        self._workers.add(d)
        d.addBoth(lambda result: (self._workers.discard(d), result)[1])

    # -- remote delivery -------------------------------------------------------------
    def _add_job(self, key: str, job: Job) -> None:
        destination = self._destinations.get(key)
        if destination is None:
            destination = self._destinations[key] = Destination(key)
        destination.jobs.append(job)
        if destination.idle:
            destination.idle.popleft().callback(True)
        else:
            self._spawn(destination)

    def _spawn(self, destination: Destination) -> None:
        while (self._running and destination.workers < self.max_per_destination
               and destination.workers < len(destination.jobs)):
            destination.workers += 1
            d = self._worker(destination)
            self._remote.add(d)
            d.addBoth(lambda result, d=d: (self._remote.discard(d), result)[1])
            d.addErrback(self._worker_failed)
            self._track(d)

    def _worker_failed(self, failure: Any) -> None:
        if self._running or not failure.check(defer.CancelledError):
            self._log.failure("queue worker failed", failure)

    @defer.inlineCallbacks
    def _worker(self, destination: Destination) -> Any:
        connected = False
        try:
            session, error = yield self._open_session(destination.key)
            if not self._running:
                if session is not None:
                    session.client.close()
                return
            if session is None:
                # Nobody is talking to this destination: every job waiting
                # for it fails the same way (and is retried on its backoff).
                # Otherwise the open connections take the jobs.
                if not destination.sessions:
                    while destination.jobs:
                        job = destination.jobs.popleft()
                        self._record(job, [error] * len(job.indices))
                return
            connected = True
            destination.sessions.add(session)
            try:
                while self._running:
                    if not destination.jobs:
                        # Keep the connection a moment for mail that is
                        # about to be due (a burst arriving one by one).
                        more = yield self._wait_for_job(destination)
                        if not more or not destination.jobs or not self._running:
                            break
                    if session.client.closed:
                        break  # the server hung up while we waited; a new worker reconnects
                    job = destination.jobs.popleft()
                    try:
                        outcomes = yield session.deliver(job.envelope)
                    except Exception as e:
                        session.client.close()
                        if not self._running:
                            self._release(job.queue_id, job.indices)
                            return
                        failure = Outcome("temporary", getattr(e, "status", "4.4.2"),
                                          f"connection to {session.remote_host} broken: {e}",
                                          session.remote_host)
                        self._record(job, [failure] * len(job.indices))
                        return
                    self._record(job, outcomes)
                if self._running:
                    yield session.quit()
            finally:
                destination.sessions.discard(session)
                if not self._running:
                    session.client.close()
        finally:
            destination.workers -= 1
            if destination.jobs and self._running and (connected or destination.workers == 0):
                # A connection broke, or the destination got new jobs while
                # this one said goodbye: reconnect.
                self._spawn(destination)
            elif destination.workers == 0 and not destination.jobs:
                self._destinations.pop(destination.key, None)

    def _wait_for_job(self, destination: Destination) -> defer.Deferred[bool]:
        """Fires True when a job is added, False after `idle_linger` seconds."""
        d: defer.Deferred[bool] = defer.Deferred()
        destination.idle.append(d)

        def expire() -> None:
            if d in destination.idle:
                destination.idle.remove(d)
                d.callback(False)

        timer = self.reactor.callLater(self.idle_linger, expire)
        d.addBoth(lambda result: (timer.cancel() if timer.active() else None, result)[1])
        return d

    @defer.inlineCallbacks
    def _open_session(self, key: str) -> Any:
        """-> (ESMTPSession, None) or (None, Outcome explaining why not)."""
        try:
            route: Route = yield self.router.route(key)
        except RouteError as e:
            kind = "temporary" if e.temporary else "permanent"
            return None, Outcome(kind, e.status, str(e))
        except Exception as e:
            return None, Outcome("temporary", "4.4.3", f"routing failed: {e}")
        relay = self.settings.relay
        credentials = Credentials(relay.username, relay.password) if route.authenticate else None
        error = Outcome("temporary", "4.4.1", f"no host to try for {key}")
        # Opportunistic STARTTLS whose handshake fails is retried once in
        # plaintext on the same host (what RFC 3207 §4.1 leaves to the client);
        # with require_tls (a smarthost) or implicit TLS it is not.
        fallback = not route.require_tls and not route.implicit_tls
        attempts = [(host, port, use_tls) for host, port in route.hosts
                    for use_tls in ((True, False) if fallback else (True,))]
        skip_plain: set[tuple[str, int]] = set()
        for host, port, use_tls in attempts:
            if not self._running:
                break
            if not use_tls and (host, port) in skip_plain:
                continue
            skip_plain.add((host, port))  # only a failed TLS handshake clears this
            endpoint = endpoints.HostnameEndpoint(self.reactor, host, port, timeout=CONNECT_TIMEOUT)
            if route.implicit_tls:
                endpoint = endpoints.wrapClientTLS(tls.client_context_factory(host), endpoint)
            try:
                client = yield endpoint.connect(ClientFactory(self.reactor))
            except Exception as e:
                error = Outcome("temporary", "4.4.1", f"connect to {host}:{port} failed: {e}", host)
                continue
            session = ESMTPSession(
                client, host, self.settings.server.hostname,
                # With implicit TLS the channel is already encrypted.
                tls_context=tls.client_context_factory if use_tls and not route.implicit_tls else None,
                require_tls=route.require_tls and not route.implicit_tls,
                credentials=credentials,
                encrypted=route.implicit_tls,
            )
            try:
                yield session.open()
                return session, None
            except SessionError as e:
                error = Outcome("temporary", e.status, f"{host}: {e}", host)
            except Exception as e:
                error = Outcome("temporary", "4.4.2", f"{host}: {e}", host)
                if session.encrypted and not route.implicit_tls:
                    skip_plain.discard((host, port))
            client.close()
        return None, error

    # -- local delivery ---------------------------------------------------------------
    @defer.inlineCallbacks
    def _deliver_locally(self, message: QueuedMessage, indices: list[int]) -> Any:
        """Recipients in hosted domains (a DSN to a local sender that came
        back through the queue, or a queue fed with local recipients)."""
        from xmail.store.interfaces import OverQuota

        outcomes = []
        for index in indices:
            address = message.recipients[index].address
            try:
                user = yield defer.maybeDeferred(self.directory.resolve, address)
                if user is None:
                    outcomes.append(Outcome("permanent", "5.1.1", f"550 5.1.1 <{address}>: no such user"))
                    continue
                data = yield self._in_thread(_read_file, self.spool.path(message.id))
                if not data.startswith(b"Return-Path:"):
                    # RFC 5321 §4.4: final delivery records the envelope sender
                    # (the MX listener hands over messages that already have it).
                    data = f"Return-Path: <{message.mail_from}>\r\n".encode() + data
                yield self.store.deliver(user, data)
                outcomes.append(Outcome("sent", "2.0.0", "delivered to the local mailbox"))
            except OverQuota as e:
                kind = "permanent" if e.permanent else "temporary"
                outcomes.append(Outcome(kind, "5.2.2" if e.permanent else "4.2.2", f"mailbox full: {e}"))
            except Exception as e:
                outcomes.append(Outcome("temporary", "4.3.0", f"local delivery failed: {e}"))
        self._record(Job(message.id, indices, [message.recipients[i].address for i in indices]), outcomes)

    # -- results ------------------------------------------------------------------------
    def _record(self, job: Job, outcomes: Sequence[Outcome]) -> None:
        now = self.clock.seconds()
        schedule = self.schedule

        events: list[tuple[str, RecipientState]] = []

        def update(txn: Any) -> tuple[QueuedMessage, bool] | None:
            events.clear()  # the writer may run this again after growing the map
            message = self.spool.get(txn, job.queue_id)
            if message is None:
                return None  # deleted meanwhile (xmailctl queue delete)
            bounce_ok = message.mail_from != ""  # RFC 3461 §6.2: never to <>
            for index, outcome in zip(job.indices, outcomes, strict=True):
                r = message.recipients[index]
                if r.state != QUEUED:
                    continue
                r.last_attempt = now
                r.status = outcome.status
                r.diagnostic = outcome.diagnostic
                r.remote_mta = outcome.remote_mta
                if outcome.kind == "sent":
                    r.state = SENT
                    events.append(("sent", r))
                    if outcome.relayed_without_dsn and bounce_ok and "SUCCESS" in r.notify:
                        r.report = "relayed"
                elif outcome.kind == "permanent":
                    r.state = FAILED
                    events.append(("bounced", r))
                    if bounce_ok and dsn.allows(r.notify, "failed"):
                        r.report = "failed"
                else:
                    r.attempts += 1
                    when = schedule.next_attempt(r.attempts, now, message.created)
                    if when is None:
                        # RFC 5321 §4.5.4.1: give up; report the last reason.
                        r.state = FAILED
                        r.diagnostic = f"gave up after {r.attempts} attempts: {outcome.diagnostic}"
                        events.append(("bounced", r))
                        if bounce_ok and dsn.allows(r.notify, "failed"):
                            r.report = "failed"
                    else:
                        r.next_attempt = when
                        if (not r.warned and schedule.should_warn(now, message.created)
                                and bounce_ok and dsn.allows(r.notify, "delayed")):
                            r.report = "delayed"
                            r.warned = True
            if message.finished():
                self.spool.delete(txn, message.id)
                return message, True
            self.spool.put(txn, message)
            return message, False

        for outcome, address in zip(outcomes, job.addresses, strict=True):
            self._log.info("{id} to <{rcpt}>: {kind} {status} {diagnostic}", id=job.queue_id, rcpt=address,
                           kind=outcome.kind, status=outcome.status, diagnostic=outcome.diagnostic)
        d = self.env.write(update)

        def written(result: tuple[QueuedMessage, bool] | None) -> None:
            self._release(job.queue_id, job.indices)
            if result is None or not self._running:
                return
            message, deleted = result
            self._audit(message, events)
            if deleted:
                self._in_thread(self.spool.remove_message, message.id)
            elif any(r.report for r in message.recipients):
                self._send_reports(message.id)
            self.kick()

        def failed(f: Any) -> None:
            self._release(job.queue_id, job.indices)
            self._log.failure("cannot record delivery results of {id}", f, id=job.queue_id)

        d.addCallbacks(written, failed)

    def _audit(self, message: QueuedMessage, events: list[tuple[str, RecipientState]]) -> None:
        if self.audit is None:
            return
        for event, r in events:
            try:
                self.audit.mail(event, id=message.id, sender=message.mail_from, recipient=r.address,
                                remote=r.remote_mta, status=r.status, reply=r.diagnostic, size=message.size)
            except Exception:
                self._log.failure("audit log failed")

    # -- DSNs ----------------------------------------------------------------------------
    def _send_reports(self, queue_id: str) -> None:
        if queue_id in self._reporting or not self._running:
            return
        self._reporting.add(queue_id)
        d = self._report(queue_id)

        def done(result: Any) -> Any:
            self._reporting.discard(queue_id)
            return result

        def retry_later(f: Any) -> None:
            self._log.failure("DSN for {id} not sent; trying again later", f, id=queue_id)
            if self._running:
                self.clock.callLater(REPORT_RETRY, self._send_reports, queue_id)

        d.addBoth(done).addErrback(retry_later)
        self._track(d)

    @defer.inlineCallbacks
    def _report(self, queue_id: str) -> Any:
        with self.env.read() as txn:
            message = self.spool.get(txn, queue_id)
        if message is None:
            return
        by_action: dict[str, list[int]] = {}
        for index, r in enumerate(message.recipients):
            if r.report:
                by_action.setdefault(r.report, []).append(index)
        if not by_action:
            return
        for action, indices in by_action.items():
            if message.mail_from:
                reports = [self._recipient_report(message, message.recipients[i], action) for i in indices]
                body = yield self._in_thread(
                    dsn.build_dsn,
                    reporting_mta=self.settings.server.hostname,
                    sender=message.mail_from,
                    recipients=reports,
                    original_path=self.spool.path(message.id),
                    arrival=message.created,
                    now=self.clock.seconds(),
                    envid=message.envid,
                    ret=message.ret,
                )
                yield self._hand_off_report(message, body)
                self._log.info("{id}: {action} DSN sent to <{sender}>", id=queue_id, action=action,
                               sender=message.mail_from)
            # Cleared action by action: a later hand-off that fails must not
            # send this one again.
            deleted = yield self.env.write(
                lambda txn, done=[(i, action) for i in indices]: self._clear_reports(txn, queue_id, done))
            if deleted:
                yield self._in_thread(self.spool.remove_message, queue_id)

    def _clear_reports(self, txn: Any, queue_id: str, handled: list[tuple[int, str]]) -> bool:
        """Mark reports sent; delete the record once nothing is left to do."""
        current = self.spool.get(txn, queue_id)
        if current is None:
            return False
        for index, action in handled:
            if current.recipients[index].report == action:
                current.recipients[index].report = ""
        if current.finished():
            self.spool.delete(txn, queue_id)
            return True
        self.spool.put(txn, current)
        return False

    def _recipient_report(self, message: QueuedMessage, r: RecipientState,
                          action: str) -> dsn.RecipientReport:
        status = r.status or ("5.0.0" if action == "failed" else "4.0.0")
        if action == "relayed":
            status = r.status if r.status.startswith("2") else "2.0.0"
        return dsn.RecipientReport(
            address=r.address,
            action=action,
            status=status,
            orcpt=r.orcpt,
            diagnostic=r.diagnostic or None,
            remote_mta=r.remote_mta or None,
            last_attempt=r.last_attempt,
            will_retry_until=(message.created + self.schedule.give_up_after) if action == "delayed" else None,
        )

    @defer.inlineCallbacks
    def _hand_off_report(self, message: QueuedMessage, body: bytes) -> Any:
        """A local sender gets the DSN straight into INBOX; a remote one
        through this queue, from the null reverse-path."""
        from xmail.store.interfaces import OverQuota

        sender = message.mail_from
        if self.sender_origin is not None:
            sender = self.sender_origin(sender) or sender
        user = None
        if self.directory is not None:
            user = yield defer.maybeDeferred(self.directory.resolve, sender)
        if user is not None:
            try:
                yield self.store.deliver(user, b"Return-Path: <>\r\n" + body)
            except OverQuota as e:
                expired = self.clock.seconds() >= message.created + self.schedule.give_up_after
                if not (e.permanent or expired):
                    raise  # retried later: the sender may make room
                # Never retried forever: the report is dropped, with a trace.
                self._log.warn("DSN for {id} to <{sender}> dropped: mailbox full", id=message.id,
                               sender=sender)
            return
        if self._is_local(_domain(sender)):
            self._log.warn("DSN to unknown local sender <{sender}> dropped", sender=sender)
            return
        yield self.enqueue("", [QueueRecipient(sender)], body)

    # -- helpers --------------------------------------------------------------------------
    def _in_thread(self, fn: Any, *args: Any, **kwargs: Any) -> defer.Deferred[Any]:
        return deferToThreadPool(self.reactor, self.reactor.getThreadPool(), fn, *args, **kwargs)


def _read_file(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()
