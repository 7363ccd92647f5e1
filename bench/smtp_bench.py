"""SMTP inbound throughput: parallel clients deliver 10 kB messages over the MX listener.

    python bench/smtp_bench.py [--seconds 20] [--clients 16] [--size 10240] [--users 16]
                               [--no-smtp-source] [--keep] [--profile FILE]

The server runs as its own process (`twistd -n -y tac/xmail.tac` with a
generated config, a fresh data directory per client run), so its peak RSS
(VmHWM) is its own; the split into anonymous and file-backed (the LMDB map)
resident memory is printed too.  Every accepted message is durable when its
250 arrives (fsync'd file + committed index).

1. This script's asyncio client: `--clients` connections, each sending
   MAIL/RCPT/DATA pipelined (RFC 2920) then the content, one message after
   another for `--seconds`.  Prints accepted messages/s and p50/p99 latency
   from MAIL to the final 250.
2. The same load from Postfix's `smtp-source`: `--clients` processes of
   `smtp-source -s 1 -d` (one session each, connection reused, each to its
   own user), together as many messages as run 1 accepted in `--seconds`;
   prints messages/s (smtp-source reports no latency; the mean latency is
   derived by Little's law: sessions / throughput).

Target (issue #3): >= 800 messages/s on the 2-core machine, RSS < 200 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
WORKERS = 1  # [server] workers of the server under test (--workers)
DOMAIN = "bench.example"
LINE = b"The quick brown fox jumps over the lazy dog, again and again and again!!\r\n"


PROFILE: list[str] = []  # e.g. ["--profile=/tmp/p", "--profiler=cprofile", "--savestats"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_message(size: int) -> bytes:
    header = (f"From: sender@client.example\r\nTo: user@{DOMAIN}\r\nSubject: benchmark\r\n"
              "Date: Fri, 27 Nov 2026 10:00:00 +0000\r\nMessage-ID: <bench@client.example>\r\n"
              "MIME-Version: 1.0\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n").encode()
    body = b""
    i = 0
    while len(header) + len(body) < size:
        # every 20th line starts with a dot: exercises dot-stuffing
        body += (b"." if i % 20 == 0 else b"") + LINE
        i += 1
    return header + body


def dot_stuff(message: bytes) -> bytes:
    stuffed = message.replace(b"\r\n.", b"\r\n..")
    if stuffed.startswith(b"."):
        stuffed = b"." + stuffed
    return stuffed


# --- server process ---------------------------------------------------------------


def prepare(data_dir: str, port: int, users: int) -> str:
    """Write the config, create the domain and users; returns the config path."""
    from xmail.auth.directory import Directory
    from xmail.config import load
    from xmail.db.environment import IndexEnvironment

    config = os.path.join(os.path.dirname(data_dir), "xmail.toml")
    empty = ", ".join(f"{name} = []" for name in
                      ("submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http", "managesieve"))
    with open(config, "w") as f:
        f.write(f'[server]\nhostname = "mx.{DOMAIN}"\ndata_dir = "{data_dir}"\nworkers = {WORKERS}\n\n'
                f'[listen]\nsmtp = ["tcp:{port}:interface=127.0.0.1"]\n'
                + "".join(f"{line.strip()}\n" for line in empty.split(",")) +
                "\n[limits]\nquota_messages = 0\n")
    settings = load(config)
    env = IndexEnvironment(settings.path("index"))
    env.open()
    directory = Directory(env, settings)
    directory.add_domain(DOMAIN)
    for i in range(users):
        directory.add_user(f"user{i}@{DOMAIN}")
    env.close()
    return config


def start_server(config: str, port: int, log_path: str) -> subprocess.Popen:
    env = dict(os.environ, XMAIL_CONFIG=config)
    process = subprocess.Popen(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()",
         "--logfile", log_path, "--pidfile", "", "-n", *PROFILE, "-y",
         os.path.join(REPO, "tac", "xmail.tac")],
        env=env, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited with {process.returncode}; see {log_path}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(100).startswith(b"220"):
                    return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"server did not start; see {log_path}")


def process_tree(pid: int) -> list[int]:
    """pid and its descendants (the worker processes when workers > 1)."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as f:
                todo += [int(child) for child in f.read().split()]
        except OSError:
            pass
    return pids


def _status(pid: int, *keys: str) -> dict[str, float]:
    values = dict.fromkeys(keys, 0.0)
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key = line.split(":")[0]
                if key in values:
                    values[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return values


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of the server's processes (all their threads)."""
    total = 0.0
    for each in process_tree(pid):
        try:
            with open(f"/proc/{each}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def rss_split(pid: int) -> str:
    """Current anonymous vs file-backed (LMDB map, page cache) resident memory,
    summed over the server's processes."""
    anon = sum(_status(each, "RssAnon")["RssAnon"] for each in process_tree(pid))
    file_backed = sum(_status(each, "RssFile")["RssFile"] for each in process_tree(pid))
    return f"now anon {anon:.0f} MB + file-backed {file_backed:.0f} MB"


def peak_rss_mb(pid: int) -> float:
    """Sum of the peak RSS (VmHWM) of the server's processes: an upper bound
    with workers, since their LMDB map pages are shared."""
    return sum(_status(each, "VmHWM")["VmHWM"] for each in process_tree(pid))


# --- our client -------------------------------------------------------------------------


async def read_reply(reader: asyncio.StreamReader) -> bytes:
    while True:
        line = await reader.readline()
        if not line:
            raise ConnectionError("server closed the connection")
        if line[3:4] != b"-":
            return line


async def one_client(index: int, port: int, users: int, payload: bytes, deadline: float,
                     latencies: list[float], failures: list[bytes]) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    await read_reply(reader)
    writer.write(b"EHLO client%d.example\r\n" % index)
    await read_reply(reader)
    n = 0
    while time.monotonic() < deadline:
        rcpt = f"user{(index + n) % users}@{DOMAIN}".encode()
        n += 1
        started = time.perf_counter()
        writer.write(b"MAIL FROM:<sender@client.example> SIZE=%d\r\nRCPT TO:<%s>\r\nDATA\r\n"
                     % (len(payload), rcpt))
        replies = [await read_reply(reader) for _ in range(3)]
        if not replies[2].startswith(b"354"):
            failures.append(b" | ".join(replies))
            writer.write(b"RSET\r\n")
            await read_reply(reader)
            continue
        writer.write(payload)
        final = await read_reply(reader)
        if final.startswith(b"250"):
            latencies.append(time.perf_counter() - started)
        else:
            failures.append(final)
    writer.write(b"QUIT\r\n")
    await read_reply(reader)
    writer.close()


async def run_clients(port: int, clients: int, users: int, payload: bytes, seconds: float) -> tuple:
    latencies: list[float] = []
    failures: list[bytes] = []
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(*(one_client(i, port, users, payload, deadline, latencies, failures)
                           for i in range(clients)))
    return latencies, failures, time.monotonic() - started


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--size", type=int, default=10240)
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--no-smtp-source", action="store_true")
    parser.add_argument("--workers", type=int, default=1,
                        help="[server] workers (0 = cores, the production default)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--profile", metavar="FILE", help="run the server under cProfile, stats to FILE")
    args = parser.parse_args()
    global WORKERS
    WORKERS = args.workers
    if args.profile:
        PROFILE[:] = [f"--profile={args.profile}", "--profiler=cprofile", "--savestats"]

    message = make_message(args.size)
    payload = dot_stuff(message) + b".\r\n"
    print(f"{os.cpu_count()} cores, message {len(message)} octets, {args.clients} clients, "
          f"{args.users} recipients (local users), {args.seconds:.0f} s; a fresh server per client")
    with running_server(args) as (server, port):
        cpu_before, client_before = cpu_seconds(server.pid), time.process_time()
        latencies, failures, elapsed = asyncio.run(
            run_clients(port, args.clients, args.users, payload, args.seconds))
        rate = len(latencies) / elapsed
        server_cpu = (cpu_seconds(server.pid) - cpu_before) / elapsed
        client_cpu = (time.process_time() - client_before) / elapsed
        print(f"python client: {len(latencies)} messages accepted in {elapsed:.1f} s = {rate:.0f} msg/s; "
              f"latency p50 {percentile(latencies, 0.5) * 1000:.1f} ms, "
              f"p99 {percentile(latencies, 0.99) * 1000:.1f} ms, "
              f"mean {statistics.fmean(latencies) * 1000:.1f} ms; refused {len(failures)}; "
              f"server peak RSS {peak_rss_mb(server.pid):.0f} MB ({rss_split(server.pid)}); "
              f"CPU: server {server_cpu:.0%}, client {client_cpu:.0%} of a core")
        for failure in failures[:3]:
            print("  refused:", failure.decode(errors="replace").strip())

    if args.no_smtp_source or not shutil.which("smtp-source"):
        return
    # One smtp-source process per session, each to its own user, so that the
    # load matches the python client's (smtp-source -t takes one recipient).
    per_session = max(50, int(rate * args.seconds / args.clients))
    with running_server(args) as (server, port):
        cpu_before = cpu_seconds(server.pid)
        started = time.monotonic()
        processes = [
            subprocess.Popen(["smtp-source", "-d", "-s", "1", "-m", str(per_session), "-l", str(args.size),
                              "-M", "client.example", "-f", "sender@client.example",
                              "-t", f"user{i % args.users}@{DOMAIN}", f"127.0.0.1:{port}"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(args.clients)]
        outputs = [p.communicate()[0] for p in processes]
        took = time.monotonic() - started
        server_cpu = (cpu_seconds(server.pid) - cpu_before) / took
        failed = [out for p, out in zip(processes, outputs, strict=True) if p.returncode != 0]
        if failed:
            print("smtp-source failed:", failed[0][-500:])
            return
        count = per_session * args.clients
        source_rate = count / took
        print(f"smtp-source x{args.clients} (-s 1 -d -l {args.size}): {count} messages in {took:.1f} s = "
              f"{source_rate:.0f} msg/s (mean latency by Little's law "
              f"{args.clients / source_rate * 1000:.1f} ms); server peak RSS "
              f"{peak_rss_mb(server.pid):.0f} MB ({rss_split(server.pid)}); CPU: server {server_cpu:.0%}")


@contextlib.contextmanager
def running_server(args: argparse.Namespace) -> Iterator[tuple[subprocess.Popen, int]]:
    workdir = tempfile.mkdtemp(prefix="xmail-smtp-bench-")
    data_dir = os.path.join(workdir, "data")
    port = free_port()
    config = prepare(data_dir, port, args.users)
    log_path = os.path.join(workdir, "twistd.log")
    server = start_server(config, port, log_path)
    try:
        yield server, port
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
        if args.keep:
            print("data kept in", workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
