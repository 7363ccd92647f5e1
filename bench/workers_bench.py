"""Worker processes (issue #9): the same load at workers=1 and workers=N.

    python bench/workers_bench.py [--workers 2] [--only smtp,imap,idle]
                                  [--rounds 3] [--smtp-clients 16] [--smtp-messages 300]
                                  [--imap-seconds 15] [--pushes 300]

Each run is a real `twistd -n xmail --config` (the one operators run) on a
fresh data directory; `[server] workers` is the only difference.  Prints:

1. SMTP: `--smtp-clients` Postfix `smtp-source` processes (C: the load
   generator takes little of the two cores), one session each delivering
   `--smtp-messages` 10 kB messages to local users over the MX listener;
   messages/s and the CPU the server processes used.
2. IMAP mixed load: bench/imap_bench.py's 50 clients and loop (SELECT, FETCH,
   STORE, SEARCH, APPEND, EXPUNGE) for `--imap-seconds`; commands answered
   before the deadline per second, the slowest answer, and clients still
   waiting 5 s after the deadline.  That client
   is one Python process here, so it competes with the workers for the two
   cores: its CPU share is printed too.
0. The CPU ceiling: how much more work N busy-looping Python processes do
   than one on this machine right now -- the best speedup any server could
   show here (a shared or busy host gives well under N).
3. Cross-worker IDLE push (workers > 1 only): an IDLE session held by one
   worker, SMTP deliveries made through the other one (which worker holds
   a connection is read from /proc); latency from the SMTP 250 (the commit
   is done) to "* n EXISTS" on the IDLE connection, p50/p99.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import select
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path[:0] = [BENCH, REPO]

import imap_bench  # noqa: E402
import smtp_bench  # noqa: E402

from tests.workers.daemon import PASSWORD, WorkerDaemon  # noqa: E402

# All clients come from 127.0.0.1: no per-address caps, and no per-address
# login throttle (50 logins at once count as 50 attempts in flight).
NO_CAPS = ("max_connections_per_ip = 0\nmax_connections_per_user = 0\nquota_messages = 0\n"
           "ip_login_failures_before_delay = 0\nip_login_failures_before_refusal = 0\n")


def cpu_seconds(daemon: WorkerDaemon) -> float:
    """CPU time of the daemon: the supervisor and, below it, its workers."""
    return smtp_bench.cpu_seconds(daemon.proc.pid) if daemon.proc is not None else 0.0


# Every run's data directory is removed only when the script ends.  This VM's
# ext4 has no journal, and such an ext4 skips inodes freed in the last 60 s
# (360 s while their inode table block is dirty) when it allocates new ones
# (fs/ext4/ialloc.c, recently_deleted): removing one run's thousands of
# messages right before the next run made every file that run created scan
# past them, a third of the server's CPU in a profile, always charged to the
# run that came second.
_WORKDIRS: list[str] = []


def workdir(prefix: str) -> str:
    path = tempfile.mkdtemp(prefix=prefix)
    _WORKDIRS.append(path)
    return path


def remove_workdirs() -> None:
    for path in _WORKDIRS:
        shutil.rmtree(path, ignore_errors=True)


SPIN = """
import time
started, n = time.perf_counter(), 0
while time.perf_counter() - started < 3:
    for i in range(10000):
        n += i * i
print(n)
"""


def cpu_ceiling(workers: int) -> float:
    """How much more pure-Python work `workers` processes get done than one
    in the same time on this machine (2 vCPUs are not always 2 cores)."""
    def run(count: int) -> int:
        processes = [subprocess.Popen([sys.executable, "-c", SPIN], stdout=subprocess.PIPE, text=True)
                     for _ in range(count)]
        return sum(int(p.communicate()[0]) for p in processes)

    return run(workers) / run(1)


def worker_cpu(daemon: WorkerDaemon) -> dict[int, float]:
    """CPU seconds of each worker process so far (workers > 1), by number."""
    if daemon.workers <= 1:
        return {}
    return {number: smtp_bench.cpu_seconds(pid) for number, pid in sorted(daemon.worker_pids().items())}


def split(before: dict[int, float], after: dict[int, float]) -> str:
    """How the server's work fell on the workers: each one's share of their CPU."""
    used = {n: after[n] - before.get(n, 0.0) for n in after}
    total = sum(used.values())
    if not total:
        return ""
    return "; workers' shares of the CPU " + "/".join(f"{used[n] / total:.0%}" for n in sorted(used))


def machine_ticks() -> tuple[int, int]:
    """(all, idle) CPU ticks of the machine, from /proc/stat."""
    with open("/proc/stat") as f:
        values = [int(v) for v in f.readline().split()[1:]]
    return sum(values), values[3] + values[4]


def busy_since(before: tuple[int, int]) -> float:
    total, idle = machine_ticks()
    return 1 - (idle - before[1]) / max(1, total - before[0])


def add_users(daemon: WorkerDaemon, domain: str, users: list[str]) -> None:
    from xmail.auth.directory import Directory
    from xmail.config import load
    from xmail.db.environment import IndexEnvironment

    settings = load(daemon.config)
    os.makedirs(settings.data_dir, exist_ok=True)
    env = IndexEnvironment(settings.path("index"))
    env.open()
    directory = Directory(env, settings)
    directory.add_domain(domain)
    for user in users:
        directory.add_user(user, password=PASSWORD)
    env.close()


def bench_smtp(workers: int, clients: int, per_session: int) -> float:
    daemon = WorkerDaemon(workdir(f"xmail-workers{workers}-smtp-"), workers=workers, limits=NO_CAPS)
    users = [f"user{i}@{smtp_bench.DOMAIN}" for i in range(clients)]
    add_users(daemon, smtp_bench.DOMAIN, users)
    daemon.start()
    try:
        port = daemon.ports["smtp"]
        cpu_before, ticks, per_worker = cpu_seconds(daemon), machine_ticks(), worker_cpu(daemon)
        started = time.monotonic()
        processes = [
            subprocess.Popen(["smtp-source", "-d", "-s", "1", "-m", str(per_session), "-l", "10240",
                              "-M", "client.example", "-f", "sender@client.example",
                              "-t", users[i], f"127.0.0.1:{port}"],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            for i in range(clients)]
        outputs = [p.communicate()[0] for p in processes]
        took = time.monotonic() - started
        server_cpu = (cpu_seconds(daemon) - cpu_before) / took
        busy = busy_since(ticks)
        failed = [out for p, out in zip(processes, outputs, strict=True) if p.returncode != 0]
        if failed:
            raise SystemExit(f"smtp-source failed: {failed[0][-500:]}")
        count = clients * per_session
        rate = count / took
        print(f"  workers={workers}: smtp-source x{clients}: {count} messages in {took:.1f} s = "
              f"{rate:.0f} msg/s; server CPU {server_cpu:.0%} of a core "
              f"({server_cpu / rate * 1000:.2f} ms per message); machine {busy:.0%} busy"
              f"{split(per_worker, worker_cpu(daemon))}", flush=True)
        return rate
    finally:
        daemon.stop()


def bench_imap(workers: int, seconds: float) -> float:
    daemon = WorkerDaemon(workdir(f"xmail-workers{workers}-imap-"), workers=workers, limits=NO_CAPS)
    with open(os.devnull, "w") as quiet:
        stdout, sys.stdout = sys.stdout, quiet
        try:
            imap_bench.build(daemon.data, 1000)
        finally:
            sys.stdout = stdout
    daemon.start()
    try:
        cpu_before, client_before, ticks = cpu_seconds(daemon), time.process_time(), machine_ticks()
        per_worker = worker_cpu(daemon)
        started = time.monotonic()
        result = asyncio.run(mixed_load(daemon.ports["imap"], seconds))
        took = time.monotonic() - started
        server_cpu = (cpu_seconds(daemon) - cpu_before) / took
        client_cpu = (time.process_time() - client_before) / took
        busy = busy_since(ticks)
        print(f"  workers={workers}: {result['clients']} clients, {result['ops']} commands in "
              f"{result['seconds']:.0f} s = {result['ops_per_second']} ops/s ({result['errors']} errors, "
              f"slowest answer {result['slowest_ms']} ms, {result['stragglers']} clients still waiting "
              f"5 s after the end); "
              f"CPU: server {server_cpu:.0%}, client {client_cpu:.0%} of a core; machine {busy:.0%} busy"
              f"{split(per_worker, worker_cpu(daemon))}", flush=True)
        return float(result["ops_per_second"])
    finally:
        daemon.stop()


async def mixed_load(port: int, seconds: float) -> dict:
    """bench/imap_bench.py's mixed workload, counting only the commands
    answered before the deadline; a client still waiting then is a
    straggler (counted, then cancelled), so one slow answer cannot stretch
    the measured time."""
    ops = errors = 0
    slowest = 0.0
    deadline = time.perf_counter() + seconds

    async def client(user: str) -> None:
        nonlocal ops, errors, slowest
        c = await imap_bench.AsyncClient.connect(port)
        await c.command(f'LOGIN {user} "{imap_bench.PASSWORD}"'.encode())
        i = 0
        try:
            while time.perf_counter() < deadline:
                i += 1
                body = imap_bench.message(i, user)
                for step in (b"SELECT INBOX", b"FETCH 1:20 (FLAGS ENVELOPE)", b"STORE 1:5 +FLAGS (\\Seen)",
                             b"SEARCH UNSEEN", b"APPEND INBOX {%d+}\r\n" % len(body) + body,
                             b"STORE 1 +FLAGS.SILENT (\\Deleted)", b"EXPUNGE"):
                    sent = time.perf_counter()
                    try:
                        await c.command(step)
                    except RuntimeError:
                        errors += 1
                        continue
                    done = time.perf_counter()
                    slowest = max(slowest, done - sent)
                    if done <= deadline:
                        ops += 1
        finally:
            c.writer.close()

    tasks = [asyncio.ensure_future(client(u)) for u in imap_bench.MIX_USERS]
    _done, pending = await asyncio.wait(tasks, timeout=seconds + 5)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    return {"clients": len(tasks), "ops": ops, "errors": errors, "seconds": seconds,
            "ops_per_second": round(ops / seconds), "stragglers": len(pending),
            "slowest_ms": round(slowest * 1000)}


def read_line(sock: socket.socket, buffer: bytearray, timeout: float) -> bytes:
    deadline = time.perf_counter() + timeout
    while b"\r\n" not in buffer:
        left = deadline - time.perf_counter()
        if left <= 0 or not select.select([sock], [], [], left)[0]:
            raise TimeoutError("no line")
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed")
        buffer += data
    line, _, rest = bytes(buffer).partition(b"\r\n")
    buffer[:] = rest
    return line


def bench_push(workers: int, pushes: int) -> None:
    daemon = WorkerDaemon(workdir(f"xmail-workers{workers}-push-"), workers=workers, limits=NO_CAPS)
    add_users(daemon, "example.com", ["idle@example.com"])
    daemon.start()
    try:
        for _ in range(50):
            idle = socket.create_connection(("127.0.0.1", daemon.ports["imap"]))
            idle_pid = daemon.worker_of(idle)
            if idle_pid is not None:
                break
            idle.close()
        buffer = bytearray()
        read_line(idle, buffer, 10)
        idle.sendall(f'a LOGIN idle@example.com "{PASSWORD}"\r\nb SELECT INBOX\r\n'.encode())
        while not read_line(idle, buffer, 10).startswith(b"b OK"):
            pass
        idle.sendall(b"c IDLE\r\n")
        assert read_line(idle, buffer, 10).startswith(b"+")
        smtp = None
        for _ in range(50):
            smtp = socket.create_connection(("127.0.0.1", daemon.ports["smtp"]))
            if daemon.worker_of(smtp) not in (None, idle_pid):
                break
            smtp.close()
        assert smtp is not None
        out = bytearray()
        read_line(smtp, out, 10)
        smtp.sendall(b"HELO client.example\r\n")
        read_line(smtp, out, 10)
        from_dot, from_ack = [], []
        body = b"From: a@client.example\r\nTo: idle@example.com\r\nSubject: push\r\n\r\npush\r\n.\r\n"
        for _ in range(pushes):
            smtp.sendall(b"MAIL FROM:<a@client.example>\r\nRCPT TO:<idle@example.com>\r\nDATA\r\n")
            for _ in range(3):
                read_line(smtp, out, 10)
            dot = time.perf_counter()
            smtp.sendall(body)
            # Both sockets at once: each line is stamped when it arrives.
            acked = exists = None
            while acked is None or exists is None:
                readable = select.select([smtp, idle], [], [], 10)[0]
                if not readable:
                    raise TimeoutError("no 250 or no EXISTS")
                now = time.perf_counter()
                if smtp in readable and acked is None:
                    if read_line(smtp, out, 10).startswith(b"250"):
                        acked = now
                if idle in readable and exists is None:
                    if read_line(idle, buffer, 10).endswith(b"EXISTS"):
                        exists = now
            from_dot.append(exists - dot)
            from_ack.append(max(0.0, exists - acked))
            time.sleep(0.01)
        smtp.close()
        idle.close()

        def p(values: list[float], fraction: float) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))] * 1000

        print(f"  workers={workers}: {pushes} deliveries through one worker, IDLE in the other:\n"
              f"    EXISTS after the 250: p50 {p(from_ack, 0.5):.2f} ms, p99 {p(from_ack, 0.99):.2f} ms "
              f"(0 = pushed before the 250 arrived)\n"
              f"    EXISTS after the final \".\" (includes the durable delivery): "
              f"p50 {p(from_dot, 0.5):.2f} ms, p99 {p(from_dot, 0.99):.2f} ms", flush=True)
    finally:
        daemon.stop()


def compare(name: str, rounds: int, workers: int, run: Any) -> None:
    """Alternate workers=1 and workers=N `rounds` times (neither always runs
    second on a warmer or more fragmented machine); speedup of the medians."""
    ones, manys = [], []
    for _ in range(rounds):
        ones.append(run(1))
        manys.append(run(workers))
    one, many = statistics.median(ones), statistics.median(manys)
    print(f"  {name}: median workers=1 {one:.0f}/s, workers={workers} {many:.0f}/s: "
          f"speedup {many / one:.2f}x (per round: "
          + ", ".join(f"{m / o:.2f}x" for o, m in zip(ones, manys, strict=True)) + ")", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--only", default="smtp,imap,idle")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smtp-clients", type=int, default=16)
    parser.add_argument("--smtp-messages", type=int, default=300)
    parser.add_argument("--imap-seconds", type=float, default=15.0)
    parser.add_argument("--pushes", type=int, default=300)
    args = parser.parse_args()
    only = set(args.only.split(","))
    print(f"{os.cpu_count()} cores; workers=1 vs workers={args.workers}", flush=True)
    print(f"CPU ceiling: {args.workers} busy Python processes do {cpu_ceiling(args.workers):.2f}x "
          "the work of one", flush=True)
    try:
        if "smtp" in only:
            print("SMTP inbound (smtp-source):", flush=True)
            compare("SMTP messages", args.rounds, args.workers,
                    lambda w: bench_smtp(w, args.smtp_clients, args.smtp_messages))
        if "imap" in only:
            print("IMAP mixed load (bench/imap_bench.py's clients):", flush=True)
            compare("IMAP commands", args.rounds, args.workers, lambda w: bench_imap(w, args.imap_seconds))
        if "idle" in only:
            print("Cross-worker IDLE push:", flush=True)
            bench_push(args.workers, args.pushes)
    finally:
        remove_workdirs()


if __name__ == "__main__":
    main()
