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
from collections.abc import Sequence
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
REPORT_RETRY = 300.0  # seconds before a DSN that could not be handed off is tried again


@dataclass
class Job:
    """Recipients of one message going to one destination in one transaction."""

    queue_id: str
    indices: list[int]
    addresses: list[str]
    envelope: Envelope | None = None  # None for local delivery


@dataclass
class Destination:
    key: str
    jobs: deque[Job] = field(default_factory=deque)
    workers: int = 0
    sessions: set[ESMTPSession] = field(default_factory=set)


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


@implementer(IOutboundQueue)
class DeliveryQueue:
    """The durable outbound queue (IOutboundQueue)."""

    _log = Logger()

    def __init__(self, env: Any, settings: Settings, store: Any, directory: Any, reactor: Any, *,
                 clock: Any = None, schedule: RetrySchedule | None = None, resolver: Any = None,
                 max_per_destination: int = 4, poll_interval: float = 15.0):
        self.env = env
        self.settings = settings
        self.store = store
        self.directory = directory
        self.reactor = reactor
        # Retry timing runs on `clock` (a task.Clock in tests); network I/O
        # and its timeouts always run on the real reactor.
        self.clock = clock if clock is not None else reactor
        self.schedule = schedule or RetrySchedule()
        self.router = Router(settings, resolver)
        self.spool = Spool(env, settings.path("queue"))
        self.max_per_destination = max_per_destination
        self.poll_interval = poll_interval
        self._destinations: dict[str, Destination] = {}
        self._in_flight: set[tuple[str, int]] = set()
        self._reporting: set[str] = set()
        self._workers: set[defer.Deferred[Any]] = set()
        self._timer: Any = None
        self._kick_pending = False
        self._running = False

    # -- IOutboundQueue ----------------------------------------------------------
    def start(self) -> None:
        os.makedirs(self.spool.directory, mode=0o700, exist_ok=True)
        self._running = True
        self._in_thread(self.spool.sweep_orphans).addErrback(
            lambda f: self._log.failure("queue orphan sweep failed", f))
        # DSNs decided before a crash but not yet handed off.
        with self.env.read() as txn:
            pending = [m.id for m in self.spool.all(txn) if any(r.report for r in m.recipients)]
        for queue_id in pending:
            self._send_reports(queue_id)
        self.kick()

    def stop(self) -> Any:
        self._running = False
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        for destination in self._destinations.values():
            destination.jobs.clear()
            for session in list(destination.sessions):
                if session.client.transport is not None:
                    session.client.transport.abortConnection()
        workers = list(self._workers)
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
        return queue_id

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
                messages = [self.spool.get(txn, queue_id) for queue_id in ids]
        except Exception:
            self._log.failure("queue scan failed")
            messages, next_when = [], None
        for message in messages:
            if message is not None:
                self._dispatch(message, now)
        wake = now + self.poll_interval
        if next_when is not None:
            wake = min(wake, next_when)
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = self.clock.callLater(max(0.0, wake - now), self._scan)

    def _dispatch(self, message: QueuedMessage, now: float) -> None:
        groups: dict[str, list[int]] = {}
        for index, r in enumerate(message.recipients):
            if r.state != QUEUED or r.next_attempt > now or (message.id, index) in self._in_flight:
                continue
            domain = _domain(r.address)
            key = LOCAL_KEY if self._is_local(domain) else self.router.destination(domain)
            groups.setdefault(key if key != LOCAL_KEY else LOCAL_KEY, []).append(index)
        path = self.spool.path(message.id)
        for key, indices in groups.items():
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

    def _release(self, queue_id: str, indices: Sequence[int]) -> None:
        self._in_flight.difference_update((queue_id, i) for i in indices)

    def _track(self, d: defer.Deferred[Any]) -> None:
        self._workers.add(d)
        d.addBoth(lambda result: (self._workers.discard(d), result)[1])

    # -- remote delivery -------------------------------------------------------------
    def _add_job(self, key: str, job: Job) -> None:
        destination = self._destinations.get(key)
        if destination is None:
            destination = self._destinations[key] = Destination(key)
        destination.jobs.append(job)
        self._spawn(destination)

    def _spawn(self, destination: Destination) -> None:
        while (self._running and destination.workers < self.max_per_destination
               and destination.workers < len(destination.jobs)):
            destination.workers += 1
            d = self._worker(destination)
            d.addErrback(lambda f: self._log.failure("queue worker failed", f))
            self._track(d)

    @defer.inlineCallbacks
    def _worker(self, destination: Destination) -> Any:
        try:
            session, error = yield self._open_session(destination.key)
            if session is None:
                # Nobody else is talking to this destination: every job
                # waiting for it fails the same way.  Otherwise the other
                # connections take the jobs.
                if destination.workers == 1:
                    while destination.jobs:
                        job = destination.jobs.popleft()
                        self._record(job, [error] * len(job.indices))
                return
            destination.sessions.add(session)
            try:
                while destination.jobs and self._running:
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
        finally:
            destination.workers -= 1
            if destination.jobs and self._running:
                self._spawn(destination)
            elif destination.workers == 0 and not destination.jobs:
                self._destinations.pop(destination.key, None)

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
        for host, port in route.hosts:
            if not self._running:
                break
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
                tls_context=None if route.implicit_tls else tls.client_context_factory,
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
                header = f"Return-Path: <{message.mail_from}>\r\n".encode()
                data = yield self._in_thread(_read_file, self.spool.path(message.id))
                yield self.store.deliver(user, header + data)
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

        def update(txn: Any) -> tuple[QueuedMessage, bool] | None:
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
                    if outcome.relayed_without_dsn and bounce_ok and "SUCCESS" in r.notify:
                        r.report = "relayed"
                elif outcome.kind == "permanent":
                    r.state = FAILED
                    if bounce_ok and dsn.allows(r.notify, "failed"):
                        r.report = "failed"
                else:
                    r.attempts += 1
                    when = schedule.next_attempt(r.attempts, now, message.created)
                    if when is None:
                        # RFC 5321 §4.5.4.1: give up; report the last reason.
                        r.state = FAILED
                        r.diagnostic = f"gave up after {r.attempts} attempts: {outcome.diagnostic}"
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
            if deleted:
                self._in_thread(self.spool.remove_message, message.id)
            elif any(r.report for r in message.recipients):
                self._send_reports(message.id)
            self.kick()

        def failed(f: Any) -> None:
            self._release(job.queue_id, job.indices)
            self._log.failure("cannot record delivery results of {id}", f, id=job.queue_id)

        d.addCallbacks(written, failed)

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
        handled: list[tuple[int, str]] = []
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
                yield self._hand_off_report(message.mail_from, body)
                self._log.info("{id}: {action} DSN sent to <{sender}>", id=queue_id, action=action,
                               sender=message.mail_from)
            handled.extend((i, action) for i in indices)

        def clear(txn: Any) -> bool:
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

        deleted = yield self.env.write(clear)
        if deleted:
            yield self._in_thread(self.spool.remove_message, queue_id)

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
    def _hand_off_report(self, sender: str, body: bytes) -> Any:
        """A local sender gets the DSN straight into INBOX; a remote one
        through this queue, from the null reverse-path."""
        user = None
        if self.directory is not None:
            user = yield defer.maybeDeferred(self.directory.resolve, sender)
        if user is not None:
            yield self.store.deliver(user, b"Return-Path: <>\r\n" + body)
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
