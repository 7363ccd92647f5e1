# -*- test-case-name: tests.queue.test_runner -*-
"""DeliveryQueue against a scripted SMTP peer on a real loopback socket.

The queue runs inside a real xmail server (the conftest fixture: real index,
store and directory); its retry timing runs on a `task.Clock` so that
backoff, delay warnings and give-up are tested without sleeping.
"""

from __future__ import annotations

import email
import email.policy
import os
import socket
import subprocess
import sys
import time
from typing import Any

import pytest
from twisted.internet import task

from tests.conftest import in_reactor, reactor_running
from tests.queue.fakesmtp import FakeSMTPPeer
from tests.support.wait import wait_until as wait_for
from xmail.queue.interfaces import IOutboundQueue, QueueRecipient
from xmail.queue.runner import REPORT_RETRY, DeliveryQueue, ScanReport
from xmail.queue.schedule import RetrySchedule
from xmail.queue.spool import FAILED, QUEUED

MESSAGE = b"From: alice@example.com\r\nTo: bob@other.test\r\nSubject: hi\r\n\r\nHello Bob.\r\n.dot line\r\n"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class QueueFixture:
    """A real server whose queue is replaced by one on a task.Clock.

    `scans` holds the ScanReport of every scan (the runner's "scan finished"
    signal) and `enqueued` counts durable enqueues, the test's own and the
    DSNs the queue sends through itself: what did NOT happen is read from
    them, never waited for."""

    def __init__(self, make_server: Any, toml: str, schedule: RetrySchedule | None = None, **queue_kw: Any):
        self.scans: list[ScanReport] = []
        self.enqueued = 0
        self.server = make_server(toml=toml)
        self.server.add_domain("example.com")
        self.server.add_user("alice@example.com")
        self.clock = task.Clock()
        self.clock.advance(time.time())
        ctx = self.server.ctx
        if ctx.queue is not None:
            self.server.call(ctx.queue.stop)
        self.env = self.server.service.core.env
        self.queue = self.make_queue(schedule, **queue_kw)
        ctx.core.queue = self.queue
        self.server.call(self.queue.start)

    def make_queue(self, schedule: RetrySchedule | None = None, **kw: Any) -> DeliveryQueue:
        ctx = self.server.ctx
        return DeliveryQueue(self.env, self.server.settings, ctx.store, ctx.directory, ctx.reactor,
                             clock=self.clock, schedule=schedule, scanned=self.scans.append,
                             enqueued=self._count_enqueue, **kw)

    def _count_enqueue(self) -> None:
        self.enqueued += 1

    def enqueue(self, sender: str, recipients: list[QueueRecipient], message: bytes = MESSAGE,
                **kw: Any) -> str:
        return self.server.call(self.queue.enqueue, sender, recipients, message, **kw)

    def advance(self, seconds: float) -> None:
        self.server.call(self.clock.advance, seconds)

    def records(self) -> list[Any]:
        with self.env.read() as txn:
            return list(self.queue.spool.all(txn))

    def record(self, queue_id: str) -> Any:
        with self.env.read() as txn:
            return self.queue.spool.get(txn, queue_id)

    def wait_attempted(self, queue_id: str, attempts: int) -> Any:
        return wait_for(lambda: (r := self.record(queue_id)) is not None and
                        all(x.attempts >= attempts or x.state != QUEUED for x in r.recipients) and r,
                        what=f"{queue_id} attempted {attempts} time(s)")

    def inbox(self, address: str) -> list[Any]:
        """Messages in a local user's INBOX, parsed."""
        def read() -> list[bytes]:
            folder = self.server.ctx.store.mailbox(address).folder("INBOX")
            out = []
            for rec in folder.records():
                with folder.open_message(rec.uid) as f:
                    out.append(f.read())
            return out
        return [email.message_from_bytes(raw, policy=email.policy.compat32) for raw in self.server.call(read)]


@pytest.fixture
def peer() -> Any:
    p = FakeSMTPPeer()
    in_reactor(p.listen, reactor_running())
    yield p
    in_reactor(p.stop)


def transport(peer: FakeSMTPPeer, domain: str = "other.test") -> str:
    return f'[transport]\n"{domain}" = "127.0.0.1:{peer.port}"\n'


def dsn_fields(msg: Any) -> tuple[Any, list[Any]]:
    assert msg.get_content_type() == "multipart/report"
    status = msg.get_payload()[1]
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    return blocks[0], blocks[1:]


def test_provides_the_interface(make_server, peer):
    from zope.interface.verify import verifyObject

    q = QueueFixture(make_server, transport(peer))
    assert verifyObject(IOutboundQueue, q.queue)


def test_delivers_with_pipelining_and_dsn_parameters(make_server, peer):
    q = QueueFixture(make_server, transport(peer))
    queue_id = q.enqueue("alice@example.com",
                         [QueueRecipient("bob@other.test", ("SUCCESS", "FAILURE"), "rfc822;bob+x@other.test"),
                          QueueRecipient("carol@other.test")],
                         MESSAGE.replace(b"\r\n", b"\n"), envid="env 1", ret="hdrs")
    wait_for(lambda: peer.transactions, what="delivery")
    (txn,) = peer.transactions
    assert txn.mail_from == "alice@example.com"
    assert txn.recipients == ["bob@other.test", "carol@other.test"]
    assert f"SIZE={len(MESSAGE)}" in txn.mail_params
    assert "RET=HDRS" in txn.mail_params and "ENVID=env+201" in txn.mail_params
    assert txn.rcpt_params[0] == "NOTIFY=SUCCESS,FAILURE ORCPT=rfc822;bob+2Bx@other.test"
    assert txn.rcpt_params[1] == "ORCPT=rfc822;carol@other.test"
    assert txn.data == MESSAGE  # LF became CRLF, dots survived stuffing
    # MAIL, both RCPTs and DATA went out as one pipelined group (RFC 2920).
    verbs = [c.split(b" ")[0] for c in peer.commands]
    assert verbs[verbs.index(b"MAIL"):verbs.index(b"MAIL") + 4] == [b"MAIL", b"RCPT", b"RCPT", b"DATA"]
    wait_for(lambda: q.record(queue_id) is None, what="record removed")
    assert not os.path.exists(q.queue.spool.path(queue_id))


def test_one_connection_carries_several_messages(make_server, peer):
    q = QueueFixture(make_server, transport(peer), max_per_destination=1)
    for i in range(5):
        q.enqueue("alice@example.com", [QueueRecipient(f"user{i}@other.test")])
    wait_for(lambda: len(peer.transactions) == 5, what="5 deliveries")
    assert peer.connections == 1
    assert {t.connection for t in peer.transactions} == {1}
    wait_for(lambda: not q.records(), what="empty queue")
    # The idle connection lingers for more mail; stop closes it.
    assert peer.current == 1
    q.server.call(q.queue.stop)
    wait_for(lambda: peer.current == 0, what="connection closed by stop")


def test_idle_connection_says_quit_after_linger(make_server, peer):
    q = QueueFixture(make_server, transport(peer), idle_linger=0.2)
    q.enqueue("alice@example.com", [QueueRecipient("bob@other.test")])
    wait_for(lambda: peer.transactions, what="delivery")
    wait_for(lambda: peer.current == 0, what="QUIT after the linger")
    assert peer.commands[-1] == b"QUIT"


def test_per_domain_concurrency_cap(make_server, peer):
    q = QueueFixture(make_server, transport(peer), max_per_destination=2)
    slow: list[Any] = []

    def on_data(txn: Any) -> bytes:
        slow.append(txn)
        return b"250 2.0.0 ok"

    peer.on_data = on_data
    for i in range(12):
        q.enqueue("alice@example.com", [QueueRecipient(f"user{i}@other.test")])
    wait_for(lambda: len(peer.transactions) == 12, what="12 deliveries")
    assert 1 <= peer.max_concurrent <= 2


def test_4xx_then_accepted_on_retry(make_server, peer):
    q = QueueFixture(make_server, transport(peer))
    answers = iter([b"451 4.7.1 greylisted, come back later"])
    peer.on_rcpt = lambda address: next(answers, b"250 2.1.5 ok")
    queue_id = q.enqueue("alice@example.com", [QueueRecipient("bob@other.test")])
    record = q.wait_attempted(queue_id, 1)
    (r,) = record.recipients
    assert r.state == QUEUED and r.status == "4.7.1" and "greylisted" in r.diagnostic
    attempted = q.clock.seconds()
    assert r.next_attempt == pytest.approx(attempted + 300)
    assert not peer.transactions
    q.advance(299)  # the timer's scan runs inside advance(): it is over when advance returns
    scan = q.scans[-1]
    assert (scan.now, scan.due, scan.dispatched) == (attempted + 299, 0, 0)  # not before the backoff
    q.advance(1)
    wait_for(lambda: peer.transactions, what="delivery on retry")
    wait_for(lambda: q.record(queue_id) is None, what="record removed")
    assert q.inbox("alice@example.com") == []  # no DSN for a success without NOTIFY=SUCCESS


def test_5xx_bounce_reaches_local_sender_inbox(make_server, peer):
    q = QueueFixture(make_server, transport(peer))
    peer.on_rcpt = lambda a: b"550 5.1.1 no such user" if a.startswith("nobody") else b"250 2.1.5 ok"
    queue_id = q.enqueue("alice@example.com",
                         [QueueRecipient("nobody@other.test", orcpt="rfc822;nobody@other.test"),
                          QueueRecipient("bob@other.test")], envid="E-42")
    wait_for(lambda: q.inbox("alice@example.com"), what="bounce in INBOX")
    (bounce,) = q.inbox("alice@example.com")
    assert bounce["To"] == "<alice@example.com>"
    per_message, (block,) = dsn_fields(bounce)
    assert per_message["Reporting-MTA"] == "dns; mail.example.com"
    assert per_message["Original-Envelope-Id"] == "E-42"
    assert block["Final-Recipient"] == "rfc822; nobody@other.test"
    assert block["Original-Recipient"] == "rfc822; nobody@other.test"
    assert block["Action"] == "failed"
    assert block["Status"] == "5.1.1"
    assert block["Remote-MTA"] == "dns; 127.0.0.1"
    assert "550 5.1.1 no such user" in block["Diagnostic-Code"]
    returned = bounce.get_payload()[2]
    assert returned.get_content_type() == "message/rfc822"
    assert returned.get_payload()[0]["Subject"] == "hi"
    assert [t.recipients for t in peer.transactions] == [["bob@other.test"]]
    wait_for(lambda: q.record(queue_id) is None, what="record removed")


def test_never_bounce_a_bounce(make_server, peer):
    q = QueueFixture(make_server, transport(peer))
    peer.on_rcpt = lambda a: b"550 5.1.1 no such user"
    queue_id = q.enqueue("", [QueueRecipient("nobody@other.test")])
    # A record goes only once its DSNs are handed off (_report clears it
    # after the hand-off): its removal is the "finished" signal.
    wait_for(lambda: q.record(queue_id) is None, what="record removed")
    assert q.enqueued == 1  # no DSN went back through the queue
    assert q.records() == []
    assert q.inbox("alice@example.com") == []


def test_notify_never_suppresses_the_bounce(make_server, peer):
    q = QueueFixture(make_server, transport(peer))
    peer.on_rcpt = lambda a: b"550 5.1.1 no such user"
    queue_id = q.enqueue("alice@example.com", [QueueRecipient("nobody@other.test", ("NEVER",))])
    wait_for(lambda: q.record(queue_id) is None, what="record removed (after any DSN hand-off)")
    assert q.enqueued == 1
    assert q.inbox("alice@example.com") == []


def test_bounce_to_remote_sender_goes_through_the_queue(make_server, peer):
    q = QueueFixture(make_server, transport(peer))
    peer.on_rcpt = lambda a: b"550 5.1.1 no such user" if a.startswith("nobody") else b"250 2.1.5 ok"
    q.enqueue("zed@other.test", [QueueRecipient("nobody@other.test")])
    wait_for(lambda: peer.transactions, what="DSN delivered to the remote sender")
    (txn,) = peer.transactions
    assert txn.mail_from == ""  # RFC 5321 §4.5.5: the null reverse-path
    assert txn.recipients == ["zed@other.test"]
    msg = email.message_from_bytes(txn.data, policy=email.policy.compat32)
    _, (block,) = dsn_fields(msg)
    assert block["Final-Recipient"] == "rfc822; nobody@other.test"
    assert block["Action"] == "failed"
    wait_for(lambda: not q.records(), what="empty queue")


def test_delay_warning_then_give_up_with_bounce(make_server):
    schedule = RetrySchedule(delays=(10.0, 20.0), give_up_after=100.0, delay_warning_after=25.0)
    q = QueueFixture(make_server, f'[transport]\n"other.test" = "127.0.0.1:{closed_port()}"\n', schedule)
    queue_id = q.enqueue("alice@example.com", [QueueRecipient("bob@other.test")])
    q.wait_attempted(queue_id, 1)
    record = q.record(queue_id)
    assert record.recipients[0].status == "4.4.1" and "refused" in record.recipients[0].diagnostic.lower()
    attempts = 1
    while (r := q.record(queue_id)) is not None and r.recipients[0].state == QUEUED and attempts < 20:
        q.advance(20)
        attempts += 1
        wait_for(lambda n=attempts: (r := q.record(queue_id)) is None
                 or r.recipients[0].attempts >= n or r.recipients[0].state != QUEUED,
                 what=f"attempt {attempts}")
    wait_for(lambda: q.record(queue_id) is None, what="gave up")
    wait_for(lambda: len(q.inbox("alice@example.com")) == 2, what="delay warning and bounce")
    delayed, failed = sorted(q.inbox("alice@example.com"), key=lambda m: m["Subject"].startswith("Undeliv"))
    assert delayed["Subject"].startswith("Delayed Mail")
    _, (block,) = dsn_fields(delayed)
    assert block["Action"] == "delayed" and block["Status"] == "4.4.1" and "Will-Retry-Until" in block
    _, (block,) = dsn_fields(failed)
    assert block["Action"] == "failed"
    # Attempts at 0, 20, 40, 60, 80 and the last one at the 100 s deadline.
    assert "gave up after 6 attempts" in block["Diagnostic-Code"]
    assert attempts == 6


def test_starttls_is_used_when_offered(make_server, tmp_path):
    from xmail import tls
    from xmail.config import ServerSettings, Settings

    ctx = tls.server_context_factory(Settings(server=ServerSettings(data_dir=str(tmp_path / "peer"))))
    peer = FakeSMTPPeer(starttls=ctx)
    in_reactor(peer.listen, reactor_running())
    try:
        q = QueueFixture(make_server, transport(peer))
        q.enqueue("alice@example.com", [QueueRecipient("bob@other.test")])
        wait_for(lambda: peer.transactions, what="delivery")
        assert peer.transactions[0].tls
        # RFC 3207 §4.2: EHLO again after TLS.
        assert [c.split(b" ")[0] for c in peer.commands[:3]] == [b"EHLO", b"STARTTLS", b"EHLO"]
    finally:
        in_reactor(peer.stop)


@pytest.mark.parametrize("mechanism", ["PLAIN", "LOGIN"])
def test_smarthost_with_auth_and_required_tls(make_server, tmp_path, mechanism):
    from xmail import tls
    from xmail.config import ServerSettings, Settings

    ctx = tls.server_context_factory(Settings(server=ServerSettings(data_dir=str(tmp_path / "peer"))))
    peer = FakeSMTPPeer(starttls=ctx, auth=("relayuser", "s3cret"))
    in_reactor(peer.listen, reactor_running())
    if mechanism == "LOGIN":
        # Only LOGIN offered: Outlook-era smarthosts.
        peer.auth_mechanisms = "LOGIN"
    try:
        toml = (f'[relay]\nhost = "127.0.0.1"\nport = {peer.port}\nusername = "relayuser"\n'
                f'password = "s3cret"\nrequire_tls = true\n')
        q = QueueFixture(make_server, toml)
        q.enqueue("alice@example.com", [QueueRecipient("bob@anywhere.test"), QueueRecipient("c@else.test")])
        wait_for(lambda: len(peer.transactions) == 2, what="relayed deliveries")
        assert all(t.tls and t.authenticated == "relayuser" for t in peer.transactions)
        assert any(c.startswith(b"AUTH " + mechanism.encode()) for c in peer.commands)
    finally:
        in_reactor(peer.stop)


def test_smarthost_without_tls_keeps_mail_queued(make_server, peer):
    toml = f'[relay]\nhost = "127.0.0.1"\nport = {peer.port}\nrequire_tls = true\n'
    q = QueueFixture(make_server, toml)
    queue_id = q.enqueue("alice@example.com", [QueueRecipient("bob@anywhere.test")])
    record = q.wait_attempted(queue_id, 1)
    assert record.recipients[0].state == QUEUED
    assert record.recipients[0].status == "4.7.0"
    assert not peer.transactions
    assert b"MAIL" not in b" ".join(peer.commands)


def test_restart_keeps_queue_and_retry_state(make_server):
    port = closed_port()
    q = QueueFixture(make_server, f'[transport]\n"other.test" = "127.0.0.1:{port}"\n')
    queue_id = q.enqueue("alice@example.com", [QueueRecipient("bob@other.test", ("FAILURE",))])
    q.wait_attempted(queue_id, 1)
    q.server.call(q.queue.stop)
    before = q.record(queue_id)
    # A new queue on the same spool (what a restart does) sees the same state.
    peer = FakeSMTPPeer()
    in_reactor(peer.listen, reactor_running(), port)
    try:
        q.queue = q.make_queue()
        q.server.ctx.core.queue = q.queue
        scans = len(q.scans)
        q.server.call(q.queue.start)
        wait_for(lambda: len(q.scans) > scans, what="the first scan after the restart")
        first = q.scans[scans]
        assert (first.due, first.dispatched) == (0, 0)  # waits for its backoff
        assert q.record(queue_id).recipients[0].attempts == before.recipients[0].attempts == 1
        assert not peer.transactions
        q.advance(300)
        wait_for(lambda: peer.transactions, what="delivery after restart")
        wait_for(lambda: q.record(queue_id) is None, what="record removed")
    finally:
        in_reactor(peer.stop)


def test_failed_recipient_in_local_domain(make_server, peer):
    q = QueueFixture(make_server, transport(peer))
    q.server.add_user("bob@example.com")
    queue_id = q.enqueue("zed@other.test", [QueueRecipient("bob@example.com")])
    wait_for(lambda: q.inbox("bob@example.com"), what="local delivery")
    (msg,) = q.inbox("bob@example.com")
    assert msg["Subject"] == "hi"
    assert msg["Return-Path"] == "<zed@other.test>"
    wait_for(lambda: q.record(queue_id) is None, what="record removed")
    assert not peer.transactions


def test_failed_states_are_kept_until_reported(make_server, peer):
    q = QueueFixture(make_server, transport(peer))
    peer.on_rcpt = lambda a: b"550 5.1.1 no"
    # A DSN that cannot be handed off stays pending in the record.
    q.server.ctx.store.deliver = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("disk on fire"))
    queue_id = q.enqueue("alice@example.com", [QueueRecipient("nobody@other.test")])
    wait_for(lambda: (r := q.record(queue_id)) is not None and r.recipients[0].state == FAILED,
             what="failure recorded")
    # The failed hand-off is over once its retry sits on the clock.
    wait_for(lambda: q.server.call(lambda: [c for c in q.clock.getDelayedCalls()
                                            if c.getTime() == q.clock.seconds() + REPORT_RETRY]),
             what="the DSN hand-off failed and its retry is scheduled")
    record = q.record(queue_id)
    assert record.recipients[0].report == "failed"
    del q.server.ctx.store.deliver
    q.advance(300)
    wait_for(lambda: q.record(queue_id) is None, what="DSN sent on retry")
    assert len(q.inbox("alice@example.com")) == 1


def test_stop_does_not_wait_for_a_silent_server(make_server):
    from twisted.internet import protocol

    accepted: list[protocol.Protocol] = []

    class Silent(protocol.Protocol):
        def connectionMade(self) -> None:
            accepted.append(self)  # and never a greeting

    silent = in_reactor(reactor_running().listenTCP, 0, protocol.Factory.forProtocol(Silent),
                        interface="127.0.0.1")
    try:
        q = QueueFixture(make_server, f'[transport]\n"other.test" = "127.0.0.1:{silent.getHost().port}"\n')
        queue_id = q.enqueue("alice@example.com", [QueueRecipient("bob@other.test")])
        wait_for(lambda: accepted, what="a connection waiting for its greeting")
        started = time.monotonic()
        q.server.call(q.queue.stop)
        assert time.monotonic() - started < 2.0
        # Nothing was recorded as an attempt: the message is simply due again.
        record = q.record(queue_id)
        assert record.recipients[0].state == QUEUED and record.recipients[0].attempts == 0
    finally:
        in_reactor(silent.stopListening)


def test_notify_success_to_a_server_without_dsn_gets_a_relayed_report(make_server):
    peer = FakeSMTPPeer(extensions=("PIPELINING",))
    in_reactor(peer.listen, reactor_running())
    try:
        q = QueueFixture(make_server, transport(peer))
        queue_id = q.enqueue("alice@example.com", [QueueRecipient("bob@other.test", ("SUCCESS",)),
                                                   QueueRecipient("carol@other.test")])
        wait_for(lambda: q.inbox("alice@example.com"), what="relayed DSN")
        (report,) = q.inbox("alice@example.com")
        _, (block,) = dsn_fields(report)
        assert block["Final-Recipient"] == "rfc822; bob@other.test"
        assert block["Action"] == "relayed" and block["Status"].startswith("2.")
        assert report.get_payload()[2].get_content_type() == "text/rfc822-headers"
        # No DSN parameters went to a server that does not offer DSN.
        assert peer.transactions[0].rcpt_params == ["", ""]
        wait_for(lambda: q.record(queue_id) is None, what="record removed")
    finally:
        in_reactor(peer.stop)


def test_recipients_of_two_domains_go_in_separate_transactions(make_server, peer):
    q = QueueFixture(make_server, transport(peer) + f'"third.test" = "127.0.0.1:{peer.port}"\n')
    q.enqueue("alice@example.com", [QueueRecipient("a@other.test"), QueueRecipient("b@third.test"),
                                    QueueRecipient("c@other.test")])
    wait_for(lambda: len(peer.transactions) == 2, what="two transactions")
    assert sorted(t.recipients for t in peer.transactions) == [["a@other.test", "c@other.test"],
                                                                ["b@third.test"]]


def test_failed_opportunistic_tls_falls_back_to_plaintext(make_server):
    peer = FakeSMTPPeer(starttls="broken")
    in_reactor(peer.listen, reactor_running())
    try:
        q = QueueFixture(make_server, transport(peer))
        q.enqueue("alice@example.com", [QueueRecipient("bob@other.test")])
        wait_for(lambda: peer.transactions, what="plaintext delivery")
        assert not peer.transactions[0].tls
        assert peer.connections == 2
        assert b"STARTTLS" in peer.commands
    finally:
        in_reactor(peer.stop)


def test_sent_and_bounced_reach_the_audit_log(make_server, peer):
    events: list[tuple[str, dict[str, Any]]] = []

    class Recorder:
        def mail(self, event: str, **fields: Any) -> None:
            events.append((event, fields))

    q = QueueFixture(make_server, transport(peer), audit=Recorder())
    peer.on_rcpt = lambda a: b"550 5.1.1 no" if a.startswith("nobody") else b"250 2.1.5 ok"
    queue_id = q.enqueue("alice@example.com", [QueueRecipient("bob@other.test"),
                                               QueueRecipient("nobody@other.test")])
    wait_for(lambda: len(events) == 2, what="two audit events")
    assert sorted((e, f["recipient"], f["status"]) for e, f in events) == [
        ("bounced", "nobody@other.test", "5.1.1"), ("sent", "bob@other.test", "2.0.0")]
    assert all(f["id"] == queue_id and f["sender"] == "alice@example.com" for _, f in events)


HOLD_LOCK = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.flock(fd, fcntl.LOCK_EX)
print("held", flush=True)
time.sleep(120)
"""


def test_only_the_leader_delivers_from_a_spool(make_server, peer, tmp_path):
    # Another process of this data directory (a worker, a second daemon)
    # holds the one leader election (xmail.db.leader): this one only queues.
    run_dir = tmp_path / "data0" / "run"  # make_server's first data directory
    run_dir.mkdir(parents=True)
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(run_dir / "leader.lock")],
                              stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        server = make_server(toml=transport(peer))
        assert server.settings.path("run") == str(run_dir)
        server.add_domain("example.com")
        server.add_user("alice@example.com")
        queue = server.ctx.queue
        queue_id = server.call(queue.enqueue, "alice@example.com", [QueueRecipient("bob@other.test")],
                               MESSAGE)
        assert not server.service.core.singletons and not queue._running  # the runner is the leader's
        with queue.env.read() as txn:
            assert queue.spool.get(txn, queue_id) is not None
        holder.kill()  # the leader dies: the kernel drops its lock ...
        holder.wait(timeout=10)
        # ... and this process takes over within a second and delivers.
        wait_for(lambda: len(peer.transactions) == 1, timeout=15, what="delivery by the new leader")
        assert server.service.core.singletons
    finally:
        holder.kill()
        holder.wait(timeout=10)
