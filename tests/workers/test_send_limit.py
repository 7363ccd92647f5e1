# -*- test-case-name: tests.workers.test_send_limit -*-
"""Acceptance: the daily send limit counts a user's submissions in every
worker (issue 14: each worker used to keep its own count, so with N
workers a user could send N x daily_send_limit)."""

from __future__ import annotations

import signal
import smtplib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.workers.daemon import PASSWORD, WorkerDaemon
from tests.workers.test_workers import message, smtp_in

pytestmark = pytest.mark.timeout(180)

LIMIT = 5


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: Any) -> Iterator[WorkerDaemon]:
    d = WorkerDaemon(str(tmp_path_factory.mktemp("sendlimit")), workers=2,
                     limits=f"daily_send_limit = {LIMIT}")
    d.ctl("domain", "add", "example.com")
    for user in ("sender", "rcpt"):
        d.add_user(f"{user}@example.com")
    d.start()
    yield d
    if d.proc is not None and d.proc.poll() is None:
        d.stop(signal.SIGKILL)


def test_daily_send_limit_is_per_user_across_workers(daemon: WorkerDaemon) -> None:
    pids = sorted(daemon.worker_pids().values())
    assert len(pids) == 2
    accepted, refused, served_by = 0, 0, []
    for n in range(2 * LIMIT):
        # Alternate the workers, a new connection each time.
        client, pid = smtp_in(daemon, "submission", pid=pids[n % 2])
        served_by.append(pid)
        try:
            client.ehlo("client.example.com")
            client.login("sender@example.com", PASSWORD)
            client.sendmail("sender@example.com", ["rcpt@example.com"],
                            message("rcpt@example.com", f"message {n}"))
            accepted += 1
        except smtplib.SMTPResponseException as e:
            # A temporary refusal (450 4.7.1): tomorrow the user may send again.
            assert e.smtp_code == 450, e
            refused += 1
        finally:
            client.close()
    assert set(served_by) == set(pids)
    assert (accepted, refused) == (LIMIT, LIMIT)
