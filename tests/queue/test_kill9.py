# -*- test-case-name: tests.queue.test_kill9 -*-
"""Acceptance: the queue survives `kill -9`.

A real `twistd -n xmail --config` daemon (supervisor and two worker
processes) accepts a message for an unreachable destination, tries once,
and all its processes are killed with SIGKILL.  After a
restart `xmailctl queue list` still shows the message with its retry state;
once the destination listens, `xmailctl queue retry --all` gets it delivered.
"""

from __future__ import annotations

import os
import smtplib
import socket
from typing import Any

from tests.conftest import PASSWORD, in_reactor, reactor_running
from tests.queue.fakesmtp import FakeSMTPPeer
from tests.support.daemon import Daemon
from tests.support.wait import wait_until as wait_for

MESSAGE = b"From: alice@example.com\r\nTo: bob@other.test\r\nSubject: survivor\r\n\r\nStill here.\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def queue_lines(daemon: Daemon) -> list[list[str]]:
    return [line.split("\t") for line in daemon.ctl("queue", "list").stdout.splitlines()]


def test_queue_survives_kill_9(tmp_path: Any) -> None:
    dead = free_port()
    data = tmp_path / "data"
    # A supervisor and two workers: kill -9 must hit the whole process group.
    daemon = Daemon(tmp_path, listeners=("smtp", "submission"), workers=2,
                    extra=f'[transport]\n"other.test" = "127.0.0.1:{dead}"\n')
    # Workaround: two workers starting on a fresh data dir race to generate
    # the self-signed certificate (xmail/tls.py ensure_certificate); create it first.
    from xmail.config import load
    from xmail.tls import ensure_certificate

    ensure_certificate(load(daemon.config))
    daemon.ctl("domain", "add", "example.com")
    daemon.ctl("user", "add", "alice@example.com", "--password-stdin", stdin=PASSWORD + "\n")

    port = daemon.start()["submission"]
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
            client.login("alice@example.com", PASSWORD)
            client.sendmail("alice@example.com", ["bob@other.test"], MESSAGE)
        # The first attempt fails (nothing listens) and is recorded.
        lines = wait_for(lambda: [x for x in queue_lines(daemon) if x[6] == "1"], timeout=20,
                         what="a failed first attempt")
        (line,) = lines
        queue_id = line[0]
        assert line[4] == "bob@other.test" and line[5] == "queued" and "refused" in line[8].lower()
    finally:
        daemon.kill9()

    # Dead daemon: the message and its retry state are on disk.
    (line,) = queue_lines(daemon)
    assert line[0] == queue_id and line[6] == "1" and line[7] != "-"
    assert os.path.exists(data / "queue" / f"{queue_id}.eml")

    peer = FakeSMTPPeer()
    in_reactor(peer.listen, reactor_running(), dead)
    daemon.start()
    try:
        # Restarted: the delivering worker has scanned the spool, and the
        # backoff (5 minutes) still holds: nothing was due, nothing is sent early.
        found = daemon.wait_for(r"queue scanned after start: (\d+) due")
        assert found.group(1) == "0", daemon.output
        (line,) = queue_lines(daemon)
        assert line[0] == queue_id and line[6] == "1"
        assert not peer.transactions
        daemon.ctl("queue", "retry", "--all")
        wait_for(lambda: peer.transactions, timeout=30, what="delivery after restart")
        (txn,) = peer.transactions
        assert txn.mail_from == "alice@example.com" and txn.recipients == ["bob@other.test"]
        assert b"Subject: survivor" in txn.data and b"Still here." in txn.data
        wait_for(lambda: not queue_lines(daemon), timeout=15, what="empty queue")
        assert not os.path.exists(data / "queue" / f"{queue_id}.eml")
    finally:
        daemon.stop()
        in_reactor(peer.stop)
