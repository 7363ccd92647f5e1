"""POP3 per-command cost against a real `twistd -n xmail`, over loopback.

    PYTHONPATH=<tree> python bench/pop3_command_bench.py [--commands 2000] [--rounds 5]

Starts a daemon (tests/support/daemon.py) on a fresh data directory,
delivers 20 small messages by SMTP, logs in once over POP3 and times, one
command at a time (each reply read before the next command is sent), then
pipelined (RFC 2449 PIPELINING, the whole batch in one write):

- `RETR n`, `UIDL n` and `NOOP`, `--commands` of each.

Prints, median over `--rounds`, commands per second (wall clock: noisy on
a shared machine) and the daemon's CPU time per command (from
/proc/PID/task/*/schedstat: what the command path costs the server, little moved by
other load).  The daemon
imports xmail from PYTHONPATH, so the same script measures two trees
(issue 14: the dispatch of async handlers must not slow the command path).
"""

from __future__ import annotations

import argparse
import os
import smtplib
import socket
import statistics
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

from tests.support.clients import Pop3Client  # noqa: E402
from tests.support.daemon import Daemon  # noqa: E402

ADDRESS = "bench@example.com"
PASSWORD = "bench password"
MESSAGES = 20
BODY = b"".join(b"line %d of a small message, as most mail is.\r\n" % i for i in range(40))


def populate(daemon: Daemon) -> None:
    daemon.ctl("domain", "add", "example.com")
    daemon.ctl("user", "add", ADDRESS, "--password-stdin", stdin=PASSWORD + "\n")
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        for i in range(MESSAGES):
            message = (f"From: a@example.org\r\nTo: {ADDRESS}\r\nSubject: m{i}\r\n\r\n").encode() + BODY
            smtp.sendmail("a@example.org", [ADDRESS], message)


def server_cpu(pid: int) -> float:
    """CPU seconds the process's threads have run (schedstat: nanoseconds,
    not the 10 ms ticks of /proc/PID/stat)."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            pass  # a thread that ended
    return total / 1e9


def one_at_a_time(client: Pop3Client, lines: list[bytes], multiline: bool) -> float:
    sock = client.sock
    started = time.perf_counter()
    for line in lines:
        sock.sendall(line)
        status = client.status()
        assert status.startswith(b"+OK"), status
        if multiline:
            while b"\r\n.\r\n" not in client.buf:
                client.buf += sock.recv(65536)
            client.buf = client.buf.split(b"\r\n.\r\n", 1)[1]
    return time.perf_counter() - started


def pipelined(client: Pop3Client, lines: list[bytes], multiline: bool) -> float:
    sock = client.sock
    started = time.perf_counter()
    sock.sendall(b"".join(lines))
    ends = 0
    data = client.buf
    client.buf = b""
    marker = b"\r\n.\r\n" if multiline else b"\r\n"
    tail = b""
    while True:
        joined = tail + data
        ends += joined.count(marker)
        tail = joined[-(len(marker) - 1):]
        if ends >= len(lines):
            break
        data = sock.recv(1 << 20)
        if not data:
            raise ConnectionError("server closed the connection")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    print(f"daemon imports xmail from PYTHONPATH={os.environ.get('PYTHONPATH', '')!r}")
    n = args.commands
    loads = {
        "RETR": ([b"RETR %d\r\n" % (i % MESSAGES + 1) for i in range(n)], True),
        "UIDL n": ([b"UIDL %d\r\n" % (i % MESSAGES + 1) for i in range(n)], False),
        "NOOP": ([b"NOOP\r\n"] * n, False),
    }
    results: dict[str, list[float]] = {}
    cpu: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as workdir:
        daemon = Daemon(workdir, listeners=("smtp", "pop3"))
        daemon.start()
        try:
            populate(daemon)
            client = Pop3Client(daemon.ports["pop3"])
            client.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            assert client.cmd(f"USER {ADDRESS}").startswith(b"+OK")
            assert client.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
            for _ in range(args.rounds):
                for name, (lines, multi) in loads.items():
                    for mode, run in (("one at a time", one_at_a_time), ("pipelined", pipelined)):
                        key = f"{name} {mode}"
                        before = server_cpu(daemon.pid)
                        results.setdefault(key, []).append(n / run(client, lines, multi))
                        cpu.setdefault(key, []).append((server_cpu(daemon.pid) - before) / n * 1e6)
            client.cmd("QUIT")
        finally:
            daemon.stop()
    for name, rates in results.items():
        print(f"{name:24s} median {statistics.median(rates):8.0f}/s  (min {min(rates):.0f}, "
              f"max {max(rates):.0f}); server CPU {statistics.median(cpu[name]):5.1f} µs/command")


if __name__ == "__main__":
    main()
