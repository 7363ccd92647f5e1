# -*- test-case-name: tests.workers.test_workers -*-
"""A real `twistd -n xmail` with several workers, for the worker tests and
bench/: loopback listeners, its own data directory, log in the work dir;
helpers to tell which worker serves a client connection (/proc).  Ports
are `tcp:0`, read back from the log."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from tests.conftest import wait_until

PASSWORD = "correct horse battery"
LISTENERS = ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http")


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    return wait_until(predicate, timeout, what, interval=0.02)


class WorkerDaemon:
    """twistd with `workers` workers on smtp, submission, pop3 and imap."""

    def __init__(self, workdir: str, workers: int = 2, extra: str = "", limits: str = ""):
        self.workdir = workdir
        self.workers = workers
        self.data = os.path.join(workdir, "data")
        self.config = os.path.join(workdir, "xmail.toml")
        self.log_path = os.path.join(workdir, "twistd.log")
        self.ports: dict[str, int] = {}  # read back from the log once started
        served = ("smtp", "submission", "pop3", "imap", "http")
        listen = "\n".join(
            f'{name} = ["tcp:0:interface=127.0.0.1"]' if name in served else f"{name} = []"
            for name in LISTENERS)
        with open(self.config, "w") as f:
            f.write(f'[server]\nhostname = "mail.example.com"\ndata_dir = "{self.data}"\n'
                    f"workers = {workers}\n[listen]\n{listen}\n[limits]\n{limits}\n{extra}\n")
        self.proc: subprocess.Popen[bytes] | None = None

    # -- administration ---------------------------------------------------------------
    def ctl(self, *args: str, stdin: str | None = None) -> str:
        result = subprocess.run([sys.executable, "-m", "xmail.cli", "--config", self.config, *args],
                                input=stdin, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def add_user(self, address: str) -> None:
        self.ctl("user", "add", address, "--password-stdin", stdin=PASSWORD + "\n")

    # -- process ------------------------------------------------------------------------------
    def start(self, timeout: float = 60.0) -> None:
        self._log = open(self.log_path, "ab")  # noqa: SIM115
        self.proc = subprocess.Popen(["twistd", "-n", "--pidfile=", "xmail", "--config", self.config],
                                     cwd=self.workdir, stdout=self._log, stderr=subprocess.STDOUT)
        wait_for(lambda: self._all_serving(), timeout=timeout, what="every worker serving")
        # The supervisor binds (workers > 1); one process binds itself.
        pattern = (r"\] (\w+) bound on \('127\.0\.0\.1', (\d+)\)" if self.workers > 1 else
                   r"\] (\w+) listening on IPv4Address\(type='TCP', host='127\.0\.0\.1', port=(\d+)\)")
        self.ports = {name: int(port) for name, port in re.findall(pattern, self.log())}

    def _all_serving(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"twistd exited:\n{self.log()}")
        if self.workers == 1:  # one process, no supervisor
            return "xmail core started" in self.log()
        pids = self.worker_pids()
        return len(pids) == self.workers and all(
            f"worker {n} (pid {pid}) serving" in self.log() for n, pid in pids.items())

    def log(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def worker_pids(self) -> dict[int, int]:
        if self.workers == 1:
            return {0: self.proc.pid} if self.proc is not None else {}
        try:
            with open(os.path.join(self.data, "run", "workers.json")) as f:
                return {int(n): pid for n, pid in json.load(f)["workers"].items()}
        except (OSError, ValueError):
            return {}

    def leader_pid(self) -> int | None:
        try:
            with open(os.path.join(self.data, "run", "leader.lock")) as f:
                text = f.read().strip()
        except OSError:
            return None
        return int(text) if text.isdigit() else None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=timeout)
        self._log.close()
        return code

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
