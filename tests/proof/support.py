# -*- test-case-name: tests.proof -*-
"""Shared helpers of the robustness proofs (issue #8, "Proof").

- `FailureWatch`: a twisted.logger observer for the in-process fixture
  server; it records every event that carries a failure (an exception that
  reached `Logger.failure`, `log.err`, or an unhandled Deferred error) or is
  logged at error/critical level, so a test can assert that no exception
  escaped a protocol.
- `Daemon`: a real `twistd -n xmail --config FILE` subprocess on free
  loopback ports (read back from its "... listening on ..." log lines), for
  kill -9, memory (VmRSS) and log tests.
- Reply readers that check the wire syntax of SMTP, POP3 and IMAP replies.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from tests.conftest import wait_until  # noqa: F401  (used by the proof tests through this module)

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


# -- a twistd subprocess -------------------------------------------------------------------------

LISTEN_LINE = re.compile(
    r"\] (?:worker \d+: )?(\w+) listening on IPv4Address\(type='TCP', host='127\.0\.0\.1', port=(\d+)\)")
WORKER_PID = re.compile(r"worker (\d+) started \(pid (\d+)\)")


def write_config(path: str, data_dir: str, listeners: tuple[str, ...], extra: str = "",
                 workers: int = 1) -> str:
    names = ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http")
    lines = ["[server]", 'hostname = "mail.example.com"', f'data_dir = "{data_dir}"', f"workers = {workers}",
             "[listen]"]
    for name in names:
        value = '["tcp:0:interface=127.0.0.1"]' if name in listeners else "[]"
        lines.append(f"{name} = {value}")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n" + extra + "\n")
    return path


class Daemon:
    """`twistd -n xmail --config FILE` as a child process in its own
    process group (with workers > 1: the supervisor and its workers)."""

    def __init__(self, workdir: str, listeners: tuple[str, ...] = ("smtp", "submission", "pop3", "imap"),
                 extra: str = "", workers: int = 1):
        self.workdir = workdir
        self.workers = workers
        self.data_dir = os.path.join(workdir, "data")
        self.config = write_config(os.path.join(workdir, "xmail.toml"), self.data_dir, listeners, extra,
                                   workers)
        self.listeners = listeners
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(workdir, "twistd.log")
        self.ports: dict[str, int] = {}
        self._log_file: Any = None
        self._log_start = 0

    # xmailctl on the same data directory
    def ctl(self, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "xmail.cli", "--config", self.config, *args],
                                input=stdin, capture_output=True, text=True, timeout=120)
        if check:
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        return result

    def start(self, timeout: float = 30.0) -> dict[str, int]:
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115
        self._log_start = self._log_file.tell()
        self.proc = subprocess.Popen(
            ["twistd", "-n", "--pidfile=", "xmail", "--config", self.config],
            cwd=self.workdir, stdout=self._log_file, stderr=subprocess.STDOUT, start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            text = self.log_text()
            if self.proc.poll() is not None:
                self.kill9()  # its workers, if any
                raise AssertionError(f"twistd exited with {self.proc.returncode}:\n{text}")
            ports = {m.group(1): int(m.group(2)) for m in LISTEN_LINE.finditer(text)}
            if text.count("xmail core started") >= self.workers and set(self.listeners) <= set(ports):
                self.ports = ports
                return ports
            if time.monotonic() > deadline:
                self.kill9()
                raise AssertionError(f"twistd did not start in {timeout} s:\n{text}")
            time.sleep(0.05)

    def log_text(self) -> str:
        """This run's part of the twistd log."""
        with open(self.log_path, "rb") as f:
            f.seek(self._log_start)
            return f.read().decode("utf-8", "replace")

    def tracebacks(self) -> list[str]:
        text = self.log_text()
        return [line for line in text.splitlines() if "Traceback" in line or "Unhandled" in line]

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def server_pids(self) -> list[int]:
        """The processes that serve connections: the workers, or twistd itself."""
        if self.workers == 1:
            return [self.pid]
        found = {int(n): int(pid) for n, pid in WORKER_PID.findall(self.log_text())}
        return [pid for pid in found.values() if os.path.exists(f"/proc/{pid}")]

    def rss_kb(self) -> int:
        """VmRSS of the serving processes together."""
        return sum(rss_kb(pid) for pid in self.server_pids())

    def kill9(self) -> None:
        """SIGKILL to the whole process group: a crash of the daemon."""
        assert self.proc is not None
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self._close_log()

    def stop(self) -> int:
        """SIGTERM; returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            self._close_log()
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            code = self.proc.wait(timeout=30)
        self._close_log()
        return code

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


# -- raw line clients ------------------------------------------------------------------------------


class LineClient:
    """A plain socket that reads CRLF lines (keeps the line endings)."""

    def __init__(self, port: int, timeout: float = 10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def line(self) -> bytes:
        """One line with its ending; b"" when the server closed."""
        while b"\n" not in self.buf:
            chunk = self.sock.recv(65536)
            if not chunk:
                rest, self.buf = self.buf, b""
                return rest
            self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return line + b"\n"

    def read_exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buf += chunk
        data, self.buf = self.buf[:n], self.buf[n:]
        return data

    def closed(self, timeout: float = 2.0) -> bool:
        """True when the server has closed (reads EOF within timeout)."""
        self.sock.settimeout(timeout)
        try:
            while True:
                chunk = self.sock.recv(65536)
                if not chunk:
                    return True
                self.buf += chunk
        except TimeoutError:
            return False
        except OSError:
            return True

    def close(self) -> None:
        try:
            self.sock.close()
        except OSError:
            pass


SMTP_REPLY_LINE = re.compile(rb"^[2-5]\d\d([ -])[\x20-\x7e]*\r\n\Z|^[2-5]\d\d\r\n\Z")


def smtp_reply(client: LineClient) -> tuple[int, list[bytes]] | None:
    """One whole (possibly multi-line) SMTP reply, syntax checked
    (RFC 5321 §4.2: Reply-code [ SP textstring ] CRLF, continuation lines
    with "-", the same code on every line); None if the server closed."""
    lines: list[bytes] = []
    code = None
    while True:
        line = client.line()
        if not line:
            assert not lines, f"connection closed inside a multi-line reply {lines!r}"
            return None
        assert SMTP_REPLY_LINE.match(line), f"malformed SMTP reply line {line!r}"
        if code is None:
            code = line[:3]
        assert line[:3] == code, f"reply code changed inside a reply: {lines + [line]!r}"
        lines.append(line)
        if len(line) == 5 or line[3:4] == b" ":
            return int(code), lines


POP3_STATUS = re.compile(rb"^(\+OK|-ERR)([ ][\x20-\x7e]*)?\r\n\Z")
POP3_CONTINUATION = re.compile(rb"^\+ [\x20-\x7e]*\r\n\Z|^\+\r\n\Z")


def pop3_status(client: LineClient, allow_continuation: bool = False) -> bytes | None:
    """One POP3 status line (RFC 1939 §3), syntax checked; None if closed."""
    line = client.line()
    if not line:
        return None
    if allow_continuation and POP3_CONTINUATION.match(line):
        return line
    assert POP3_STATUS.match(line), f"malformed POP3 status line {line!r}"
    return line


def pop3_multiline(client: LineClient) -> list[bytes]:
    """The body of a multi-line response up to the "." line."""
    lines = []
    while True:
        line = client.line()
        assert line.endswith(b"\r\n"), f"POP3 line without CRLF {line!r}"
        if line == b".\r\n":
            return lines
        lines.append(line)
