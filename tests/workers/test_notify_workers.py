# -*- test-case-name: tests.workers.test_notify_workers -*-
"""Acceptance: NOTIFY (RFC 5465) across worker processes -- a session in
one worker hears of an APPEND and a CREATE made in the other (the store's datagram path
that IDLE uses; nothing polls)."""

from __future__ import annotations

import shutil
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from tests.protocols.imap_support import Wire, message
from tests.workers.daemon import PASSWORD, WorkerDaemon
from tests.workers.test_workers import in_worker

pytestmark = [pytest.mark.skipif(shutil.which("twistd") is None, reason="twistd not on PATH"),
              pytest.mark.timeout(180)]


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: Any) -> Iterator[WorkerDaemon]:
    d = WorkerDaemon(str(tmp_path_factory.mktemp("notify-workers")), workers=2)
    d.ctl("domain", "add", "example.com")
    d.add_user("watch@example.com")
    d.start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop(signal.SIGKILL)


def _wire_in(daemon: WorkerDaemon, **where: Any) -> tuple[Wire, int]:
    return in_worker(daemon, lambda: Wire(daemon.ports["imap"], timeout=30), lambda w: w.sock,
                     lambda w: w.close(), **where)


def test_status_notification_crosses_workers(daemon: WorkerDaemon) -> None:
    watcher, pid = _wire_in(daemon)
    other, other_pid = _wire_in(daemon, not_pid=pid)
    try:
        assert other_pid != pid
        for wire in (watcher, other):
            wire.ok(f'LOGIN "watch@example.com" "{PASSWORD}"')
        watcher.ok("SELECT INBOX")
        watcher.ok("NOTIFY SET (selected (MessageNew MessageExpunge)) (personal (MessageNew MessageExpunge))")
        data = message("across")
        other.send(b"a1 APPEND Sent {%d+}\r\n" % len(data) + data + b"\r\n")
        assert other.until(b"a1")[0].startswith(b"OK")
        assert watcher.line().startswith(b"* STATUS Sent (MESSAGES 1 UIDNEXT 2 ")
        other.send(b"a2 APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
        assert other.until(b"a2")[0].startswith(b"OK")
        assert watcher.line() == b"* 1 EXISTS"
        watcher.ok("NOTIFY SET (personal (MailboxName SubscriptionChange))")
        other.ok("CREATE Across")
        assert watcher.line() == b'* LIST () "/" Across'
    finally:
        watcher.close()
        other.close()
