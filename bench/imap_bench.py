"""IMAP benchmark: a 100,000-message folder, 10,000 IDLE connections, and
50 clients with a mixed workload.

    python bench/imap_bench.py [--messages 100000] [--idle 10000] [--clients 50]
                               [--seconds 10] [--data DIR] [--only big,idle,mixed]

The server is a full XmailService (store, portal, SMTP and IMAP listeners on
loopback) in a child process; the clients run in this process, so client and
server do not share a GIL, and the server's RSS is its own.  Prints:

1. 100k folder (1/4 unseen, subjects "message N", every 1000th "xylophone N"):
   SELECT (target < 50 ms), FETCH 1:* (UID FLAGS) (< 1.5 s), UID SEARCH UNSEEN
   (< 200 ms), SEARCH SUBJECT x (< 2 s), FETCH 1:100 (BODY.PEEK[]) — the
   median of several runs, timed from sending the command to its tagged OK;
   then FETCH 1:* (BODY.PEEK[]) once, with the server's RSS growth meanwhile
   (the answer is streamed with back-pressure, never held whole).
2. N logged-in IDLE connections (100 users, INBOX selected): server RSS per
   connection (target < 50 kB), then 50 deliveries over SMTP, each pushed to
   the user's N/100 idlers: latency from the SMTP "." to "* n EXISTS" on
   each connection, p50 / p99 (target p99 < 250 ms).
3. 50 clients, each on its own 200-message INBOX, looping SELECT, FETCH
   (FLAGS ENVELOPE), STORE, SEARCH, APPEND, STORE \\Deleted + EXPUNGE: IMAP
   commands per second over --seconds.

--data reuses a populated data directory (building takes a minute or two).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import resource
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bulkload import bulk_append, open_store, provisioned_inbox  # noqa: E402

from xmail.config import ListenSettings, ServerSettings, Settings  # noqa: E402

PASSWORD = "bench password"
BIG_USER = "big@example.com"
IDLE_USERS = [f"idle{i:03d}@example.com" for i in range(100)]
MIX_USERS = [f"mix{i:02d}@example.com" for i in range(50)]


def settings_for(data_dir: str, ports: dict[str, int] | None = None) -> Settings:
    listen = {f.name: () for f in dataclasses.fields(ListenSettings)}
    for name, port in (ports or {}).items():
        listen[name] = (f"tcp:{port}:interface=127.0.0.1:backlog=4096",)
    server = ServerSettings(data_dir=data_dir, hostname="bench.example.com", workers=1)
    # 50 clients logging in at once from 127.0.0.1 would count as one address
    # spraying (failures in flight); the benchmark measures IMAP, not that.
    limits = dataclasses.replace(Settings().limits, ip_login_failures_before_delay=0,
                                 ip_login_failures_before_refusal=0)
    return dataclasses.replace(Settings(), server=server, listen=ListenSettings(**listen), limits=limits)


def message(i: int, to: str) -> bytes:
    subject = f"xylophone {i}" if i % 1000 == 0 else f"message {i}"
    head = (f"From: sender{i % 97}@example.org\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Date: Tue, 3 Nov 2026 10:00:00 +0000\r\nMessage-ID: <{i}.bench@example.org>\r\n"
            f"MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n").encode()
    line = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"
    return head + line * (20 + i % 7)


# --- building the data directory (no reactor, no fsync per message) ----------------------


def build(data_dir: str, messages: int) -> None:
    env, directory, store = open_store(settings_for(data_dir))

    def fill(address: str, count: int) -> None:
        directory.add_user(address, password=PASSWORD)
        inbox = provisioned_inbox(store, address)
        flag_sets = [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Seen", "\\Answered"}),
                     frozenset({"\\Seen", "\\Flagged"})]
        yesterday = time.time() - 86400
        bulk_append(store, inbox, ((message(i, address), flag_sets[i % len(flag_sets)], yesterday)
                                   for i in range(count)))

    started = time.perf_counter()
    fill(BIG_USER, messages)
    for address in IDLE_USERS:
        fill(address, 3)
    for address in MIX_USERS:
        fill(address, 200)
    env.close()
    print(f"built {messages} + {len(IDLE_USERS) * 3} + {len(MIX_USERS) * 200} messages "
          f"in {time.perf_counter() - started:.1f} s", flush=True)


# --- the server (child process) -------------------------------------------------------------


def serve(data_dir: str, ports: dict[str, int]) -> None:
    from twisted.internet import reactor

    from xmail.service import makeService

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    service = makeService(settings_for(data_dir, ports), reactor)
    reactor.callWhenRunning(service.startService)
    reactor.callWhenRunning(lambda: print("READY", flush=True))
    reactor.run()


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --- a small blocking client ---------------------------------------------------------------


class Client:
    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.n = 0
        self._line()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        self.buf += chunk

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2 :]
                return line
            self._fill()

    def command(self, text: str) -> tuple[float, int, bytes]:
        """(seconds to the tagged reply, response bytes, tagged line)."""
        self.n += 1
        tag = b"b%d" % self.n
        started = time.perf_counter()
        self.sock.sendall(tag + b" " + text.encode() + b"\r\n")
        total = 0
        while True:
            line = self._line()
            total += len(line) + 2
            if line.endswith(b"}") and b"{" in line:
                n = int(line[line.rindex(b"{") + 1 : -1])
                while len(self.buf) < n:
                    self._fill()
                self.buf = self.buf[n:]
                total += n
            if line.startswith(tag + b" "):
                assert line[len(tag) + 1 :].startswith(b"OK"), line
                return time.perf_counter() - started, total, line


def bench_big(port: int, server_pid: int, runs: int = 5) -> dict:
    c = Client(port)
    c.command(f'LOGIN {BIG_USER} "{PASSWORD}"')
    out: dict = {}

    def timed(label: str, cmd: str, n: int) -> None:
        times, size = [], 0
        for _ in range(n):
            t, size, _ = c.command(cmd)
            times.append(t)
        out[label] = {"median_ms": round(statistics.median(times) * 1000, 1),
                      "first_ms": round(times[0] * 1000, 1), "bytes": size}
        print(f"  {label:34s} median {out[label]['median_ms']:8.1f} ms  (first {out[label]['first_ms']} ms,"
              f" {size} bytes)", flush=True)

    timed("SELECT INBOX", "SELECT INBOX", runs)
    timed("FETCH 1:* (UID FLAGS)", "FETCH 1:* (UID FLAGS)", 3)
    timed("UID SEARCH UNSEEN", "UID SEARCH UNSEEN", runs)
    timed("SEARCH SUBJECT x", "SEARCH SUBJECT x", 3)
    timed("FETCH 1:100 (BODY.PEEK[])", "FETCH 1:100 (BODY.PEEK[])", runs)
    # The whole folder's bodies in one answer: streamed with back-pressure,
    # so the server's RSS must not grow by the size of the answer.
    before = rss_kb(server_pid)
    peak = [before]
    stop = False

    def watch() -> None:
        while not stop:
            peak[0] = max(peak[0], rss_kb(server_pid))
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t, size, _ = c.command("FETCH 1:* (BODY.PEEK[])")
    stop = True
    watcher.join()
    out["FETCH 1:* (BODY.PEEK[])"] = {"seconds": round(t, 2), "bytes": size,
                                      "mb_per_second": round(size / t / 1e6, 1),
                                      "server_rss_growth_mb": round((peak[0] - before) / 1024, 1)}
    print(f"  {'FETCH 1:* (BODY.PEEK[])':34s} {t:8.2f} s  ({size / 1e6:.0f} MB, {size / t / 1e6:.0f} MB/s; "
          f"server RSS +{(peak[0] - before) / 1024:.1f} MB at peak)", flush=True)
    c.command("LOGOUT")
    return out


# --- asyncio clients for IDLE and the mixed workload ---------------------------------------


class AsyncClient:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader, self.writer, self.n = reader, writer, 0

    @classmethod
    async def connect(cls, port: int) -> AsyncClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        client = cls(reader, writer)
        await reader.readline()
        return client

    async def command(self, text: bytes) -> list[bytes]:
        self.n += 1
        tag = b"c%d" % self.n
        self.writer.write(tag + b" " + text + b"\r\n")
        lines = []
        while True:
            line = (await self.reader.readline()).rstrip(b"\r\n")
            if not line:
                raise ConnectionError("closed")
            if line.endswith(b"}") and b"{" in line:
                await self.reader.readexactly(int(line[line.rindex(b"{") + 1 : -1]))
            if line.startswith(tag + b" "):
                if not line[len(tag) + 1 :].startswith(b"OK"):
                    raise RuntimeError(line)
                return lines
            lines.append(line)


async def _idle_phase(port: int, smtp_port: int, count: int, server_pid: int, deliveries: int) -> dict:
    base_rss = rss_kb(server_pid)
    clients: list[tuple[str, AsyncClient]] = []
    sem = asyncio.Semaphore(32)

    async def one(i: int) -> None:
        user = IDLE_USERS[i % len(IDLE_USERS)]
        async with sem:
            c = await AsyncClient.connect(port)
            while True:
                try:
                    await c.command(f'LOGIN {user} "{PASSWORD}"'.encode())
                    break
                except RuntimeError as e:  # NO [UNAVAILABLE]: the hashing pool is busy
                    if b"UNAVAILABLE" not in e.args[0]:
                        raise
                    await asyncio.sleep(0.05)
            await c.command(b"SELECT INBOX")
            c.writer.write(b"idle IDLE\r\n")
            line = await c.reader.readline()
            assert line.startswith(b"+"), line
            clients.append((user, c))

    started = time.perf_counter()
    await asyncio.gather(*(one(i) for i in range(count)))
    setup = time.perf_counter() - started
    await asyncio.sleep(1.0)
    rss = rss_kb(server_pid)
    per_conn = (rss - base_rss) * 1024 / count
    print(f"  {count} IDLE connections up in {setup:.1f} s; server RSS {base_rss / 1024:.1f} -> "
          f"{rss / 1024:.1f} MB = {per_conn / 1024:.1f} kB per connection", flush=True)

    by_user: dict[str, list[AsyncClient]] = {}
    for user, c in clients:
        by_user.setdefault(user, []).append(c)
    latencies: list[float] = []
    loop = asyncio.get_running_loop()
    for k in range(deliveries):
        user = IDLE_USERS[k % len(IDLE_USERS)]
        idlers = by_user.get(user, [])

        async def wait_exists(c: AsyncClient) -> float:
            while True:
                line = await c.reader.readline()
                if line.endswith(b"EXISTS\r\n"):
                    return time.perf_counter()

        waits = [asyncio.ensure_future(wait_exists(c)) for c in idlers]
        smtp = smtplib.SMTP("127.0.0.1", smtp_port)
        smtp.ehlo()
        smtp.mail("sender@example.org")
        smtp.rcpt(user)
        smtp.putcmd("data")
        smtp.getreply()
        body = message(900000 + k, user)
        smtp.send(body + b".\r\n")
        sent = time.perf_counter()
        await loop.run_in_executor(None, smtp.getreply)
        smtp.quit()
        arrived = await asyncio.wait_for(asyncio.gather(*waits), 30)
        latencies.extend(t - sent for t in arrived)
    latencies.sort()
    result = {
        "connections": count, "rss_per_connection_kb": round(per_conn / 1024, 1),
        "deliveries": deliveries, "pushes": len(latencies),
        "p50_ms": round(latencies[len(latencies) // 2] * 1000, 1),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 1),
        "max_ms": round(latencies[-1] * 1000, 1),
    }
    print(f"  delivery -> EXISTS over {len(latencies)} pushes: p50 {result['p50_ms']} ms, "
          f"p99 {result['p99_ms']} ms, max {result['max_ms']} ms", flush=True)
    for _, c in clients:
        c.writer.close()
    return result


async def _mixed_phase(port: int, seconds: float) -> dict:
    ops = 0
    errors = 0
    deadline = time.perf_counter() + seconds

    async def worker(user: str) -> None:
        nonlocal ops, errors
        c = await AsyncClient.connect(port)
        await c.command(f'LOGIN {user} "{PASSWORD}"'.encode())
        i = 0
        while time.perf_counter() < deadline:
            i += 1
            body = message(i, user)
            steps = [
                b"SELECT INBOX",
                b"FETCH 1:20 (FLAGS ENVELOPE)",
                b"STORE 1:5 +FLAGS (\\Seen)",
                b"SEARCH UNSEEN",
                b"APPEND INBOX {%d+}\r\n" % len(body) + body,
                b"STORE 1 +FLAGS.SILENT (\\Deleted)",
                b"EXPUNGE",
            ]
            for step in steps:
                try:
                    await c.command(step)
                    ops += 1
                except RuntimeError:
                    errors += 1
        c.writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker(u) for u in MIX_USERS))
    elapsed = time.perf_counter() - started
    result = {"clients": len(MIX_USERS), "ops": ops, "errors": errors, "seconds": round(elapsed, 1),
              "ops_per_second": round(ops / elapsed)}
    print(f"  {len(MIX_USERS)} clients, mixed workload: {ops} commands in {elapsed:.1f} s = "
          f"{result['ops_per_second']} ops/s ({errors} errors)", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--idle", type=int, default=10_000)
    parser.add_argument("--deliveries", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--data", default=None)
    parser.add_argument("--only", default="big,idle,mixed")
    parser.add_argument("--serve", nargs=2, metavar=("DIR", "PORTS_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], json.loads(args.serve[1]))
        return
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if hard < args.idle + 1000:
        print(f"fd limit {hard} is below {args.idle} connections; lowering --idle", flush=True)
        args.idle = hard - 1000
    data_dir = args.data or tempfile.mkdtemp(prefix="imap-bench-")
    if not os.path.exists(os.path.join(data_dir, "index")):
        build(data_dir, args.messages)
    ports = {"imap": free_port(), "smtp": free_port()}
    command = [sys.executable, os.path.abspath(__file__), "--serve", data_dir, json.dumps(ports)]
    server = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        while server.stdout.readline().strip() != "READY":
            pass
        time.sleep(0.5)
        results: dict = {}
        only = set(args.only.split(","))
        if "big" in only:
            print(f"{args.messages}-message folder:", flush=True)
            results["big"] = bench_big(ports["imap"], server.pid)
        if "idle" in only:
            print("IDLE:", flush=True)
            results["idle"] = asyncio.run(_idle_phase(ports["imap"], ports["smtp"], args.idle, server.pid,
                                                      args.deliveries))
        if "mixed" in only:
            print("mixed workload:", flush=True)
            results["mixed"] = asyncio.run(_mixed_phase(ports["imap"], args.seconds))
        print(json.dumps(results, indent=1))
    finally:
        server.terminate()
        server.wait(10)


if __name__ == "__main__":
    main()
