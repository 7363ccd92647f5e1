# -*- test-case-name: tests.workers.test_shared -*-
"""Which process of a data directory runs the singleton jobs (the outbound
queue runner, the Recycle purge, audit log pruning): the one holding an
flock.  The one election (issue 14): a process on its own wins it at once,
workers (xmail.workers) compete for it.

Every worker tries a non-blocking flock on data_dir/run/leader.lock once a
second until it gets it; the kernel drops the lock when its holder exits
(even by kill -9), so another worker takes over within a second.  The
leader writes its pid into the file (for operators and tests).  Nobody
gives leadership up while running: it ends with the process.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable
from typing import Any

from twisted.internet import task
from twisted.logger import Logger

LEADER_LOCK = "leader.lock"  # in data_dir/run/
TRY_INTERVAL = 1.0  # seconds between attempts of a follower


class LeaderElection:
    _log = Logger()

    def __init__(self, path: str, reactor: Any, elected: Callable[[], Any], *,
                 interval: float = TRY_INTERVAL, name: str = "this process"):
        self.path = path
        self.reactor = reactor
        self.elected = elected
        self.interval = interval
        self.name = name
        self.leading = False
        self._fd: int | None = None
        self._loop: task.LoopingCall | None = None

    def start(self) -> None:
        """Try now (so a single worker leads at once), then every interval."""
        self._loop = task.LoopingCall(self.try_lead)
        self._loop.clock = self.reactor
        self._loop.start(self.interval, now=True).addErrback(
            lambda f: self._log.failure("leader election stopped", f))

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        if self._fd is not None:
            os.close(self._fd)  # drops the flock
            self._fd = None
        self.leading = False

    def try_lead(self) -> bool:
        if self.leading:
            return True
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return False
        self._fd = fd
        self.leading = True
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._log.info("{name} (pid {pid}) runs the singleton jobs", name=self.name, pid=os.getpid())
        try:
            self.elected()
        except Exception:
            self._log.failure("starting the singleton jobs failed")
        return True


def leader_pid(path: str) -> int | None:
    """The pid the current leader wrote, if any."""
    try:
        with open(path) as f:
            text = f.read().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None
