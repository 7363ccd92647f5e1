# -*- test-case-name: tests.test_service -*-
"""What the daemon process itself needs, whatever it runs: the root service
that turns a StartupError into one line and exit status 1, the exit status
of a daemon stopped by a fault, and SIGTERM as a clean stop.

Kept apart from xmail.service (which imports every protocol, the store and
the auth stack) so the supervisor of a multi-worker daemon, which serves no
session itself, does not load them: ~15 MB less resident memory in the one
process that never needs them (bench/RESULTS.md, "Memory").
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.internet.error import ReactorNotRunning
from twisted.logger import Logger

from xmail.preflight import StartupError


class StartupGuard(service.MultiService):
    """The root service under twistd: a StartupError while starting becomes
    the operator's one line and exit status 1 (SystemExit), not a traceback
    and a daemon left running without sockets (issue 16)."""

    def __init__(self, child: service.IService):
        super().__init__()
        self.child = child
        child.setServiceParent(self)

    def privilegedStartService(self) -> None:
        self._guard(super().privilegedStartService)

    def startService(self) -> None:
        self._guard(super().startService)

    def _guard(self, start: Callable[[], None]) -> None:
        try:
            start()
        except StartupError as e:
            # twistd prints it (to its log once it has redirected stderr).
            raise SystemExit(f"xmail: {e}") from None


# The exit status a daemon stopped by stop_with_error ends with: twistd
# itself exits 0 once its reactor stops.
_exit_status: list[int] = []


def stop_with_error(line: str, reactor: Any) -> None:
    """A fault met while running (a listener or a worker that cannot start):
    log the operator's one line, stop, and exit 1 (see exit_with_status)."""
    Logger().critical("xmail: {line}", line=line)
    if not _exit_status:
        _exit_status.append(1)
    if reactor.running:
        try:
            reactor.stop()
        except ReactorNotRunning:
            pass  # already stopping: a SIGTERM came first


def exit_with_status() -> None:
    """atexit, registered for twistd and the tac: twistd has stopped the
    services, removed its pid file and closed its log by now; end with the
    status stop_with_error recorded instead of twistd's 0."""
    if _exit_status:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError, AttributeError):
                pass
        os._exit(_exit_status[0])


def stop_cleanly_on_sigterm(reactor: Any = None) -> None:
    """Make SIGTERM a normal stop with exit status 0 (twistd and the tac).

    twistd's own handler re-raises SIGTERM once shut down, so `kill` or
    `systemctl stop` would end with status 143.  Our handler, installed once
    the reactor runs (after twistd's), stops the reactor the same way: the
    services drain and the index commits, then twistd exits 0.  Not for
    tests, whose reactor does not run in the main thread.
    """
    if reactor is None:
        from twisted.internet import reactor as default_reactor

        reactor = default_reactor

    stopping = []

    def stop() -> None:
        if not stopping:  # a second SIGTERM while draining is a no-op
            stopping.append(True)
            Logger().info("received SIGTERM, stopping")
            try:
                reactor.stop()
            except ReactorNotRunning:
                pass  # already stopping for another reason (a worker that cannot start)

    def on_sigterm(signum: int, frame: Any) -> None:
        # Nothing but the hand-over here: a signal handler runs between two
        # bytecodes of whatever the main thread was doing, and logging from
        # it could wait forever on a lock the interrupted code holds (a
        # worker writing its log when the supervisor's SIGTERM came).
        reactor.callFromThread(stop)

    reactor.callWhenRunning(signal.signal, signal.SIGTERM, on_sigterm)
