# -*- test-case-name: tests.proof -*-
"""Shared helpers of the robustness proofs (issue #8, "Proof").

- `FailureWatch`: a twisted.logger observer for the in-process fixture
  server; it records every event that carries a failure (an exception that
  reached `Logger.failure`, `log.err`, or an unhandled Deferred error) or is
  logged at error/critical level, so a test can assert that no exception
  escaped a protocol.
- `Daemon` (tests.support.daemon): a real `twistd -n xmail --config FILE`
  subprocess, for kill -9, memory (VmRSS) and log tests.
- Reply readers that check the wire syntax of SMTP and POP3 replies
  (tests.support.clients).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.logger import LogLevel, formatEvent, globalLogPublisher

# The daemon harness and the raw clients live in tests.support (issue 14);
# re-exported here for the proof tests.
from tests.support.clients import (
    LineClient,
    pop3_multiline,
    pop3_status,
    smtp_reply,
)
from tests.support.daemon import Daemon, rss_kb, write_config
from tests.support.wait import wait_until

# No throttling in the way of thousands of generated bad logins.
NO_THROTTLE = """
[limits]
login_failures_before_delay = 1000000
login_failures_before_refusal = 1000000
ip_login_failures_before_delay = 1000000
ip_login_failures_before_refusal = 1000000
account_login_failures_before_delay = 1000000
max_connections_per_ip = 0
"""


# -- exceptions escaping the in-process server ------------------------------------------------


class FailureWatch:
    """Collects failure and error events logged anywhere in this process."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self._lock = threading.Lock()

    def __call__(self, event: dict[str, Any]) -> None:
        level = event.get("log_level")
        if "log_failure" in event or level in (LogLevel.error, LogLevel.critical):
            with self._lock:
                self.events.append(event)

    def reports(self) -> list[str]:
        out = []
        with self._lock:
            events = list(self.events)
        for event in events:
            text = formatEvent(event)
            failure = event.get("log_failure")
            if failure is not None:
                text += "\n" + failure.getTraceback()
            out.append(text)
        return out

    def check(self) -> None:
        reports = self.reports()
        assert not reports, "the server logged failures:\n" + "\n---\n".join(reports)


@contextmanager
def watch_failures() -> Iterator[FailureWatch]:
    watch = FailureWatch()
    globalLogPublisher.addObserver(watch)
    try:
        yield watch
    finally:
        globalLogPublisher.removeObserver(watch)


__all__ = ["NO_THROTTLE", "Daemon", "FailureWatch", "LineClient", "pop3_multiline", "pop3_status", "rss_kb",
           "smtp_reply", "wait_until", "watch_failures", "write_config"]
