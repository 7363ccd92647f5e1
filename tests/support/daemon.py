"""The one subprocess harness: a real `twistd -n xmail --config FILE`.

The daemon runs in its own process group (with `[server] workers` > 1 it is
a supervisor plus worker processes, and `kill9()` must hit them all); its
output is collected by a thread, listener ports are `tcp:0` and read back
from its "... listening on ..." / "... bound on ..." log lines.

`twistd` and `xmailctl` are those of the interpreter running the tests,
found next to `sys.executable` (a missing script on PATH is no reason to
skip a suite).
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from xmail.config import parse

LISTENERS = ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http", "managesieve")
TCP_ANY = "tcp:0:interface=127.0.0.1"
STARTED = "xmail core started"

# "[-] imap listening on IPv4Address(...)" from one process or from a worker
# ("worker 1: imap listening on ..."); "imap bound on ('127.0.0.1', N) for 2
# workers" from a supervisor.
_LISTENING = re.compile(
    r"\] (?:worker \d+: )?(\w+) listening on IPv4Address\(type='TCP', host='127\.0\.0\.1', port=(\d+)\)")
_BOUND = re.compile(r"\] (\w+) bound on \('127\.0\.0\.1', (\d+)\)")
_SERVING = re.compile(r"worker \d+ \(pid \d+\) serving")
_WORKER_PID = re.compile(r"worker (\d+) started \(pid (\d+)\)")

# The twistd entry point of this Python, for when no script sits beside it.
_TWISTD_LAUNCHER = "import sys; from twisted.scripts.twistd import run; sys.argv[0] = 'twistd'; run()"


def twistd_argv() -> list[str]:
    """argv[0:] that runs this interpreter's twistd."""
    script = Path(sys.executable).with_name("twistd")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", _TWISTD_LAUNCHER]


def xmailctl_argv() -> list[str]:
    """argv[0:] that runs this interpreter's xmailctl."""
    script = Path(sys.executable).with_name("xmailctl")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "xmail.cli"]


def write_config(path: str | os.PathLike[str], data_dir: str | os.PathLike[str],
                 listeners: Sequence[str] = LISTENERS, extra: str = "", workers: int = 1,
                 listen: Mapping[str, str] | None = None, hostname: str = "mail.example.com",
                 check: bool = True) -> str:
    """A config file: `listeners` on free loopback ports, `listen` maps a
    listener to a given endpoint description, the others are off.  With
    check the text is parsed first, so a typo fails here, not in twistd."""
    listen = dict(listen or {})
    lines = ["[server]", f'hostname = "{hostname}"', f'data_dir = "{data_dir}"', f"workers = {workers}",
             "[listen]"]
    for name in LISTENERS:
        if name in listen:
            lines.append(f'{name} = ["{listen[name]}"]')
        elif name in listeners:
            lines.append(f'{name} = ["{TCP_ANY}"]')
        else:
            lines.append(f"{name} = []")
    text = "\n".join(lines) + "\n" + extra + "\n"
    if check:
        parse(text, str(path))
    with open(path, "w") as f:
        f.write(text)
    return str(path)


def run_ctl(config: str, *args: str, stdin: str | None = None, check: bool = True,
            timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """`xmailctl --config CONFIG ARGS`; with check, exit status 0 is asserted."""
    result = subprocess.run([*xmailctl_argv(), "--config", config, *args], input=stdin,
                            capture_output=True, text=True, timeout=timeout)
    if check:
        assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


class Daemon:
    """`twistd -n xmail --config FILE` as a child process.

    Daemon(workdir, listeners=..., extra=..., workers=...) writes
    workdir/xmail.toml (data in workdir/data); config= uses a file written
    by the caller; argv= runs another command line entirely (the tac file,
    the embedded default config) with the same output handling.
    """

    def __init__(self, workdir: str | os.PathLike[str],
                 listeners: Sequence[str] = ("smtp", "submission", "pop3", "imap"), extra: str = "",
                 workers: int = 1, *, listen: Mapping[str, str] | None = None, config: str | None = None,
                 argv: Sequence[str] | None = None, twistd_options: Sequence[str] = (),
                 launcher: Sequence[str] | None = None, env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike[str] | None = None, **popen: Any):
        self.workdir = str(workdir)
        self.workers = workers
        self.data_dir = os.path.join(self.workdir, "data")
        self.listeners = tuple(listeners) + tuple(listen or ())
        if config is None and argv is None:
            config = write_config(os.path.join(self.workdir, "xmail.toml"), self.data_dir, listeners, extra,
                                  workers, listen)
        self.config = config
        if argv is None:
            argv = [*(launcher or twistd_argv()), "-n", "--pidfile=", *twistd_options, "xmail",
                    "--config", str(config)]
        self.argv = list(argv)
        self.env = {**os.environ, **env} if env is not None else None
        self.cwd = str(cwd) if cwd is not None else self.workdir
        self.popen = popen
        self.proc: subprocess.Popen[bytes] | None = None
        self.lines: list[str] = []
        self.ports: dict[str, int] = {}
        self._reader: threading.Thread | None = None

    # -- process ----------------------------------------------------------------------------------
    def spawn(self) -> Daemon:
        """Start the process without waiting for it to serve."""
        self.lines = []
        self.proc = subprocess.Popen(self.argv, cwd=self.cwd, env=self.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, start_new_session=True, **self.popen)
        self._reader = threading.Thread(target=self._read, args=(self.proc,), daemon=True, name="twistd-log")
        self._reader.start()
        return self

    def _read(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace"))

    def start(self, timeout: float = 60.0) -> dict[str, int]:
        """Spawn and wait until every process serves and every listener is
        bound; returns the ports by listener name."""
        self.spawn()
        deadline = time.monotonic() + timeout
        while True:
            if self.proc is not None and self.proc.poll() is not None:
                self.kill9()  # its workers, if any
                raise AssertionError(f"twistd exited with {self.proc.returncode}:\n{self.output}")
            text = self.output
            ports = self.bound_ports()
            if self._serving(text) and set(self.listeners) <= set(ports):
                self.ports = ports
                return ports
            if time.monotonic() > deadline:
                self.kill9()
                raise AssertionError(f"twistd did not start in {timeout} s:\n{text}")
            time.sleep(0.02)

    def _serving(self, text: str) -> bool:
        if text.count(STARTED) < self.workers:
            return False
        return self.workers == 1 or len(_SERVING.findall(text)) >= self.workers

    def bound_ports(self) -> dict[str, int]:
        """Listener name -> port, from the log lines so far."""
        text = self.output
        ports = {name: int(port) for name, port in _LISTENING.findall(text)}
        ports.update((name, int(port)) for name, port in _BOUND.findall(text))
        return ports

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def send_signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60.0) -> int:
        """Signal (SIGTERM) and wait; SIGKILL to the group if it hangs.
        Returns the exit status."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill9()
                raise AssertionError(f"twistd did not stop on signal {sig}:\n{self.output}") from None
        self._join()
        return self.proc.returncode

    def kill9(self) -> None:
        """SIGKILL to the whole process group: a crash of the daemon."""
        if self.proc is None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
        self._join()

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def _join(self) -> None:
        if self._reader is not None:
            self._reader.join(5)

    # -- output -----------------------------------------------------------------------------------
    @property
    def output(self) -> str:
        """Everything this run wrote (stdout and stderr) so far."""
        return "".join(self.lines)

    def log_text(self) -> str:
        return self.output

    def wait_for(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match[str]:
        """The first output line from line `start` on matching the regex."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            for line in self.lines[start:]:
                match = regex.search(line)
                if match:
                    return match
            if self.proc is not None and self.proc.poll() is not None:
                self._join()
                for line in self.lines[start:]:
                    match = regex.search(line)
                    if match:
                        return match
                raise AssertionError(
                    f"twistd exited ({self.proc.returncode}) before {pattern!r}:\n{self.output}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {pattern!r} in the output within {timeout} s:\n{self.output}")
            time.sleep(0.02)

    def port(self, listener: str, timeout: float = 30.0) -> int:
        """The port a listener is bound to, waiting for its log line."""
        match = self.wait_for(rf"\b{listener} (?:listening on .*port=(\d+)|bound on \('[\d.]+', (\d+)\))",
                              timeout)
        return int(match.group(1) or match.group(2))

    def tracebacks(self) -> list[str]:
        return [line for line in self.output.splitlines() if "Traceback" in line or "Unhandled" in line]

    # -- workers ----------------------------------------------------------------------------------
    def worker_pids(self) -> dict[int, int]:
        """Worker number -> pid of the live workers (twistd itself with one process)."""
        if self.workers == 1:
            return {0: self.proc.pid} if self.proc is not None else {}
        found = {int(n): int(pid) for n, pid in _WORKER_PID.findall(self.output)}
        return {n: pid for n, pid in found.items() if os.path.exists(f"/proc/{pid}")}

    def server_pids(self) -> list[int]:
        """The processes that serve connections: the workers, or twistd itself."""
        return list(self.worker_pids().values())

    def rss_kb(self) -> int:
        """VmRSS of the serving processes together."""
        return sum(rss_kb(pid) for pid in self.server_pids())

    # -- administration ---------------------------------------------------------------------------
    def ctl(self, *args: str, stdin: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        """xmailctl on this daemon's config."""
        assert self.config is not None, "a Daemon started from argv has no config"
        return run_ctl(self.config, *args, stdin=stdin, check=check)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def server_side_sockets(ports: Sequence[int]) -> list[tuple[int, int, int]]:
    """(TCP state, bytes received but not yet read, client port) of every
    IPv4 connection whose local end is one of `ports`, from the kernel's
    /proc/net/tcp (which sees every process's sockets, a daemon's too).
    States: 0x01 established, 0x08 close-wait (the client closed, the
    server has not yet), 0x0A listening (left out).  What tells a test that
    a server read what was sent, or handled a close, without sleeping."""
    wanted = {f"{port:04X}" for port in ports}
    found = []
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            local_port = fields[1].rsplit(":", 1)[1]
            state = int(fields[3], 16)
            if local_port in wanted and state != 0x0A:
                rx_queue = int(fields[4].split(":")[1], 16)
                found.append((state, rx_queue, int(fields[2].rsplit(":", 1)[1], 16)))
    return found
