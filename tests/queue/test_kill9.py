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
import re
import shutil
import signal
import smtplib
import socket
import subprocess
import sys
import time
from typing import Any

import pytest

from tests.conftest import PASSWORD, in_reactor, reactor_running
from tests.queue.fakesmtp import FakeSMTPPeer
from tests.queue.test_runner import wait_for

pytestmark = pytest.mark.skipif(shutil.which("twistd") is None, reason="twistd not on PATH")

MESSAGE = b"From: alice@example.com\r\nTo: bob@other.test\r\nSubject: survivor\r\n\r\nStill here.\r\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Daemon:
    def __init__(self, config: str, workdir: str, name: str):
        self.config = config
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(workdir, f"{name}.log")

    def start(self) -> int:
        """Start twistd and return the submission port it bound."""
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        start = self.log.tell()
        # Its own process group: with [server] workers the daemon is a
        # supervisor plus worker processes, and kill -9 must hit them all.
        self.proc = subprocess.Popen(
            ["twistd", "-n", "--pidfile=", "xmail", "--config", self.config],
            cwd=self.workdir, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True,
        )

        def port() -> int | None:
            with open(self.log_path, "rb") as f:
                f.seek(start)
                text = f.read().decode("utf-8", "replace")
            if self.proc.poll() is not None:
                raise AssertionError(f"twistd exited:\n{text}")
            m = re.search(r"submission listening on .*port=(\d+)", text)
            return int(m.group(1)) if m and "xmail core started" in text else None

        return wait_for(port, timeout=30, what="twistd listening")

    def kill(self, sig: int) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, sig)
        self.proc.wait(timeout=30)
        self.log.close()


def ctl(config: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([sys.executable, "-m", "xmail.cli", "--config", config, *args], input=stdin,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result


def queue_lines(config: str) -> list[list[str]]:
    return [line.split("\t") for line in ctl(config, "queue", "list").stdout.splitlines()]


def test_queue_survives_kill_9(tmp_path: Any) -> None:
    dead = free_port()
    data = tmp_path / "data"
    config = str(tmp_path / "xmail.toml")
    with open(config, "w") as f:
        f.write(f"""
[server]
hostname = "mail.example.com"
data_dir = "{data}"
workers = 2
[listen]
smtp = ["tcp:0:interface=127.0.0.1"]
submission = ["tcp:0:interface=127.0.0.1"]
submissions = []
pop3 = []
pop3s = []
imap = []
imaps = []
http = []
[transport]
"other.test" = "127.0.0.1:{dead}"
""")
    # Workaround: two workers starting on a fresh data dir race to generate
    # the self-signed certificate (xmail/tls.py ensure_certificate); create it first.
    from xmail.config import load
    from xmail.tls import ensure_certificate

    ensure_certificate(load(config))
    ctl(config, "domain", "add", "example.com")
    ctl(config, "user", "add", "alice@example.com", "--password-stdin", stdin=PASSWORD + "\n")

    daemon = Daemon(config, str(tmp_path), "first")
    port = daemon.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=20) as client:
            client.login("alice@example.com", PASSWORD)
            client.sendmail("alice@example.com", ["bob@other.test"], MESSAGE)
        # The first attempt fails (nothing listens) and is recorded.
        lines = wait_for(lambda: [x for x in queue_lines(config) if x[6] == "1"], timeout=20,
                         what="a failed first attempt")
        (line,) = lines
        queue_id = line[0]
        assert line[4] == "bob@other.test" and line[5] == "queued" and "refused" in line[8].lower()
    finally:
        daemon.kill(signal.SIGKILL)

    # Dead daemon: the message and its retry state are on disk.
    (line,) = queue_lines(config)
    assert line[0] == queue_id and line[6] == "1" and line[7] != "-"
    assert os.path.exists(data / "queue" / f"{queue_id}.eml")

    peer = FakeSMTPPeer()
    in_reactor(peer.listen, reactor_running(), dead)
    daemon = Daemon(config, str(tmp_path), "second")
    daemon.start()
    try:
        time.sleep(1.0)
        # Restarted: the backoff (5 minutes) still holds, nothing is sent early.
        (line,) = queue_lines(config)
        assert line[0] == queue_id and line[6] == "1"
        assert not peer.transactions
        ctl(config, "queue", "retry", "--all")
        wait_for(lambda: peer.transactions, timeout=30, what="delivery after restart")
        (txn,) = peer.transactions
        assert txn.mail_from == "alice@example.com" and txn.recipients == ["bob@other.test"]
        assert b"Subject: survivor" in txn.data and b"Still here." in txn.data
        wait_for(lambda: not queue_lines(config), timeout=15, what="empty queue")
        assert not os.path.exists(data / "queue" / f"{queue_id}.eml")
    finally:
        daemon.kill(signal.SIGTERM)
        in_reactor(peer.stop)
