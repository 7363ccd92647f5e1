# -*- test-case-name: tests.workers.test_workers -*-
"""The suite's one daemon harness (tests.support.daemon) set up with
several workers, for the worker tests and bench/; helpers to tell which
worker serves a client connection (/proc)."""

from __future__ import annotations

import os
import re
import socket
import time
from collections.abc import Callable
from typing import Any

from tests.support.daemon import Daemon
from tests.support.server import PASSWORD
from tests.support.wait import wait_until

__all__ = ["PASSWORD", "WorkerDaemon", "log_count", "pid_alive", "server_inode", "wait_for"]

SERVED = ("smtp", "submission", "pop3", "imap", "http")


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    return wait_until(predicate, timeout, what, interval=0.02)


class WorkerDaemon(Daemon):
    """The suite's daemon (tests.support.daemon) with `workers` workers on
    smtp, submission, pop3, imap and http, plus what worker tests ask of it:
    the leader, and which worker holds a client connection."""

    def __init__(self, workdir: str, workers: int = 2, extra: str = "", limits: str = ""):
        super().__init__(workdir, listeners=SERVED, extra=f"[limits]\n{limits}\n{extra}", workers=workers)
        self.data = self.data_dir

    def add_user(self, address: str) -> None:
        self.ctl("user", "add", address, "--password-stdin", stdin=PASSWORD + "\n")

    def log(self) -> str:
        return self.output

    def _all_serving(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"twistd exited:\n{self.output}")
        pids = self.worker_pids()
        return len(pids) == self.workers and (self.workers == 1 or all(
            f"worker {n} (pid {pid}) serving" in self.output for n, pid in pids.items()))

    def leader_pid(self) -> int | None:
        try:
            with open(os.path.join(self.data, "run", "leader.lock")) as f:
                text = f.read().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    # -- which worker serves a connection ----------------------------------------------------
    def worker_of(self, client: socket.socket) -> int | None:
        """The pid of the worker holding the server side of a connected
        client socket, found through /proc/net/tcp and /proc/PID/fd."""
        local_port = client.getsockname()[1]
        server_port = client.getpeername()[1]
        inode = server_inode(server_port, local_port)
        if inode is None:
            return None
        for pid in self.worker_pids().values():
            try:
                fds = os.listdir(f"/proc/{pid}/fd")
            except OSError:
                continue
            for fd in fds:
                try:
                    if os.readlink(f"/proc/{pid}/fd/{fd}") == f"socket:[{inode}]":
                        return pid
                except OSError:
                    continue
        return None


def server_inode(server_port: int, client_port: int) -> int | None:
    want_local, want_remote = f"0100007F:{server_port:04X}", f"0100007F:{client_port:04X}"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                fields = line.split()
                if fields[1] == want_local and fields[2] == want_remote and fields[9] != "0":
                    return int(fields[9])
        time.sleep(0.01)  # accepted a moment later
    return None


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


def log_count(text: str, pattern: str) -> int:
    return len(re.findall(pattern, text))
