"""Load: thousands of concurrent logged-in sessions across IMAP, POP3 and SMTP.

    python bench/load_bench.py [--connections 2000] [--hold 60] [--think 1.0]
                               [--workers 2] [--users 500] [--rate 40] [--rounds 2]

A real `twistd -n xmail --config FILE` daemon (its own process group,
`workers` processes, every listener on 127.0.0.1 only) on a fresh data dir
with `--users` accounts.  One asyncio client process opens `--connections`
sessions, split 45 % IMAP, 25 % POP3, 30 % SMTP submission, ramping up at
`--rate` connections/s from 127.0.0.1 (the only address that may log in
without TLS; the config lifts the per-address connection cap for it --
2,000 connections need no extra source addresses or ports).  Every session logs in
(IMAP LOGIN + SELECT INBOX, POP3 USER/PASS, SMTP EHLO + AUTH PLAIN) and
then, until the hold period ends, sends one light command every `--think`
seconds on average (IMAP NOOP / STATUS / FETCH FLAGS, POP3 STAT / NOOP /
LIST, SMTP NOOP / RSET and every tenth time a small message to itself).
Then every session logs out and closes.  The whole load runs `--rounds`
times on the same server: CPython rarely returns freed memory to the OS, so
"no leak" means RSS after round 2 is close to RSS after round 1 (the memory
of round 1 was reused), not that RSS drops back to the pre-load baseline.

A login refused as temporary (the server's bounded password-verifier
queue is full: argon2 costs ~30 ms of CPU) is retried on a new connection
after a pause, as real clients do, and counted apart from errors.

Prints: errors (any unexpected reply, timeout or disconnect; target 0) with
samples, temporary login refusals retried, connections and logins, commands and command latency per protocol,
throughput, and the server's RSS (sum over the workers' VmRSS) at
baseline, at peak and after every connection has closed (no leak: back
near baseline).  Bounded: the whole run stops by itself after ramp + hold +
a grace period, and the daemon is stopped (SIGTERM, then SIGKILL).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import random
import re
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict

PASSWORD = "load bench password"
DOMAIN = "example.com"
OP_TIMEOUT = 30.0
LOGIN_ATTEMPTS = 10
LISTEN = re.compile(r"\] (?:worker \d+: )?(\w+) listening on "
                    r"IPv4Address\(type='TCP', host='127\.0\.0\.1', port=(\d+)\)")
WORKER_PID = re.compile(r"worker (\d+) started \(pid (\d+)\)")


# -- the daemon ------------------------------------------------------------------------------------


class Server:
    def __init__(self, workdir: str, workers: int, users: int):
        self.workdir = workdir
        self.workers = workers
        self.data_dir = os.path.join(workdir, "data")
        self.config = os.path.join(workdir, "xmail.toml")
        self.log_path = os.path.join(workdir, "twistd.log")
        listen = {name: '["tcp:0:interface=127.0.0.1"]' if name in ("submission", "pop3", "imap") else "[]"
                  for name in ("smtp", "submission", "submissions", "pop3", "pop3s", "imap", "imaps", "http",
                               "managesieve")}
        with open(self.config, "w") as f:
            f.write(f'[server]\nhostname = "mail.example.com"\ndata_dir = "{self.data_dir}"\n'
                    f"workers = {workers}\n[listen]\n" + "".join(f"{k} = {v}\n" for k, v in listen.items())
                    # One client address holds every session (plaintext login
                    # is allowed from 127.0.0.1 only): no per-address cap, and
                    # the per-address login throttle (password spraying: it
                    # counts logins still being verified) must not read 2,000
                    # parallel logins from one address as an attack.
                    + "[limits]\nmax_connections_per_ip = 0\nip_login_failures_before_delay = 1000000\n"
                    + "ip_login_failures_before_refusal = 1000000\n")
        self.addresses = [f"user{i}@{DOMAIN}" for i in range(users)]
        self.proc: subprocess.Popen[bytes] | None = None
        self.ports: dict[str, int] = {}

    def create_users(self) -> float:
        """Directly in the index (one argon2 hash shared by all): seconds taken."""
        from xmail.auth.directory import Directory
        from xmail.auth.passwords import hash_password
        from xmail.config import load
        from xmail.db.environment import IndexEnvironment

        start = time.monotonic()
        settings = load(self.config)
        env = IndexEnvironment(settings.path("index"))
        env.open()
        try:
            directory = Directory(env, settings)
            directory.add_domain(DOMAIN)
            stored = hash_password(PASSWORD)
            for address in self.addresses:
                directory.add_user(address, password_hash=stored)
        finally:
            env.close()
        return time.monotonic() - start

    def start(self) -> None:
        log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen(["twistd", "-n", "--pidfile=", "xmail", "--config", self.config],
                                     cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            text = self.log_text()
            if self.proc.poll() is not None:
                raise SystemExit(f"twistd exited:\n{text}")
            ports = {m.group(1): int(m.group(2)) for m in LISTEN.finditer(text)}
            ready = text.count("xmail core started") >= self.workers
            if ready and {"submission", "pop3", "imap"} <= set(ports):
                self.ports = ports
                return
            time.sleep(0.1)
        raise SystemExit(f"twistd did not start:\n{self.log_text()}")

    def log_text(self) -> str:
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def pids(self) -> list[int]:
        if self.workers <= 1:
            return [self.proc.pid] if self.proc else []
        found = dict(WORKER_PID.findall(self.log_text()))
        return [int(pid) for pid in found.values() if os.path.exists(f"/proc/{pid}")]

    def rss_kb(self, field: str = "VmRSS") -> int:
        """VmRSS, or RssAnon (heap: what a leak grows; VmRSS also counts the
        LMDB index pages mapped from the file, which grow with the mail)."""
        total = 0
        for pid in self.pids():
            try:
                with open(f"/proc/{pid}/status") as f:
                    total += next(int(line.split()[1]) for line in f if line.startswith(field + ":"))
            except (OSError, StopIteration):
                pass
        return total

    def memory(self) -> tuple[int, int]:
        return self.rss_kb("VmRSS"), self.rss_kb("RssAnon")

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=30)


# -- clients ---------------------------------------------------------------------------------------


class TemporaryLoginFailure(Exception):
    pass


class Stats:
    def __init__(self) -> None:
        self.login_retries: Counter[str] = Counter()
        self.connected: Counter[str] = Counter()
        self.logged_in: Counter[str] = Counter()
        self.ops: Counter[str] = Counter()
        self.latency: dict[str, list[float]] = defaultdict(list)
        self.errors: Counter[str] = Counter()
        self.samples: list[str] = []
        self.open_now = 0
        self.peak_open = 0

    def error(self, proto: str, what: str) -> None:
        self.errors[proto] += 1
        if len(self.samples) < 20:
            self.samples.append(f"{proto}: {what}")


class Session:
    proto = ""

    def __init__(self, host: str, port: int, source: str, user: str, stats: Stats, think: float,
                 stop_at: float):
        self.host, self.port, self.source, self.user = host, port, source, user
        self.stats, self.think, self.stop_at = stats, think, stop_at
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.rng = random.Random(hash((user, source, port)))

    async def line(self) -> bytes:
        data = await asyncio.wait_for(self.reader.readline(), OP_TIMEOUT)
        if not data:
            raise ConnectionError("server closed the connection")
        return data

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.wait_for(
            asyncio.open_connection(self.host, self.port, local_addr=(self.source, 0), limit=1 << 20),
            OP_TIMEOUT)

    async def close(self) -> None:
        if self.writer is None:
            return
        self.writer.close()
        try:
            await asyncio.wait_for(self.writer.wait_closed(), 5)
        except Exception:
            pass
        self.writer = None

    async def connect_and_login(self) -> None:
        """A temporary login refusal (the bounded password-verifier queue is
        full: IMAP NO [UNAVAILABLE], POP3 -ERR [SYS/TEMP], SMTP 454) is
        retried on a new connection after a pause, as clients do."""
        for attempt in range(LOGIN_ATTEMPTS):
            await self.connect()
            try:
                await self.login()
                return
            except TemporaryLoginFailure:
                self.stats.login_retries[self.proto] += 1
                await self.close()
                await asyncio.sleep(self.rng.uniform(1.0, 2.0) * (attempt + 1))
        raise RuntimeError(f"login still refused after {LOGIN_ATTEMPTS} attempts")

    async def run(self) -> None:
        stats = self.stats
        counted = False
        try:
            await self.connect_and_login()
            stats.connected[self.proto] += 1
            stats.logged_in[self.proto] += 1
            stats.open_now += 1
            counted = True
            stats.peak_open = max(stats.peak_open, stats.open_now)
            n = 0
            while True:
                delay = self.rng.uniform(0.5, 1.5) * self.think
                if time.monotonic() + delay >= self.stop_at:
                    break
                await asyncio.sleep(delay)
                start = time.monotonic()
                await self.light(n)
                stats.latency[self.proto].append(time.monotonic() - start)
                stats.ops[self.proto] += 1
                n += 1
            await asyncio.sleep(max(0.0, self.stop_at - time.monotonic()))
            await self.logout()
        except Exception as e:
            stats.error(self.proto, f"{self.user}: {type(e).__name__}: {e}")
        finally:
            if counted:
                stats.open_now -= 1
            await self.close()

    async def login(self) -> None:
        raise NotImplementedError

    async def light(self, n: int) -> None:
        raise NotImplementedError

    async def logout(self) -> None:
        raise NotImplementedError


class IMAPSession(Session):
    proto = "imap"
    exists = 0
    counter = 0

    async def command(self, text: str) -> bytes:
        self.counter += 1
        tag = b"c%d" % self.counter
        await self.send(tag + b" " + text.encode() + b"\r\n")
        while True:
            line = await self.line()
            m = re.match(rb"\* (\d+) EXISTS", line)
            if m:
                self.exists = int(m.group(1))
            if line.startswith(tag + b" "):
                if not line.startswith(tag + b" OK"):
                    raise RuntimeError(f"{text!r} -> {line[:200]!r}")
                return line

    async def login(self) -> None:
        greeting = await self.line()
        if not greeting.startswith(b"* OK"):
            raise RuntimeError(f"greeting {greeting!r}")
        try:
            await self.command(f'LOGIN {self.user} "{PASSWORD}"')
        except RuntimeError as e:
            if "[UNAVAILABLE]" in str(e):
                raise TemporaryLoginFailure() from None
            raise
        await self.command("SELECT INBOX")

    async def light(self, n: int) -> None:
        choice = n % 3
        if choice == 0:
            await self.command("NOOP")
        elif choice == 1:
            await self.command("STATUS INBOX (MESSAGES UNSEEN UIDNEXT)")
        elif self.exists:
            await self.command("FETCH 1:* (FLAGS)")
        else:
            await self.command("CHECK")

    async def logout(self) -> None:
        await self.send(b"z LOGOUT\r\n")
        while not (await self.line()).startswith(b"z "):
            pass


class POP3Session(Session):
    proto = "pop3"

    async def status(self, command: bytes, multiline: bool = False) -> bytes:
        await self.send(command + b"\r\n")
        line = await self.line()
        if not line.startswith(b"+OK"):
            raise RuntimeError(f"{command!r} -> {line[:200]!r}")
        if multiline:
            while await self.line() != b".\r\n":
                pass
        return line

    async def login(self) -> None:
        greeting = await self.line()
        if not greeting.startswith(b"+OK"):
            raise RuntimeError(f"greeting {greeting!r}")
        await self.status(b"USER " + self.user.encode())
        try:
            await self.status(b"PASS " + PASSWORD.encode())
        except RuntimeError as e:
            if "[SYS/TEMP]" in str(e):
                raise TemporaryLoginFailure() from None
            raise

    async def light(self, n: int) -> None:
        choice = n % 3
        if choice == 0:
            await self.status(b"STAT")
        elif choice == 1:
            await self.status(b"NOOP")
        else:
            await self.status(b"LIST", multiline=True)

    async def logout(self) -> None:
        await self.status(b"QUIT")


class SMTPSession(Session):
    proto = "smtp"
    mail_every = 10

    async def reply(self) -> int:
        while True:
            line = await self.line()
            if len(line) < 4 or not line[:3].isdigit():
                raise RuntimeError(f"malformed reply {line!r}")
            if line[3:4] != b"-":
                return int(line[:3])

    async def command(self, text: bytes, expect: int) -> None:
        await self.send(text + b"\r\n")
        code = await self.reply()
        if code != expect:
            raise RuntimeError(f"{text[:60]!r} -> {code}")

    async def login(self) -> None:
        code = await self.reply()
        if code != 220:
            raise RuntimeError(f"greeting {code}")
        await self.command(b"EHLO load.example", 250)
        token = base64.b64encode(f"\0{self.user}\0{PASSWORD}".encode())
        await self.send(b"AUTH PLAIN " + token + b"\r\n")
        code = await self.reply()
        if code == 454:  # RFC 4954 §6: temporary authentication failure
            raise TemporaryLoginFailure()
        if code != 235:
            raise RuntimeError(f"AUTH PLAIN -> {code}")

    async def light(self, n: int) -> None:
        if self.mail_every and n % self.mail_every == self.mail_every - 1:
            await self.command(f"MAIL FROM:<{self.user}>".encode(), 250)
            await self.command(f"RCPT TO:<{self.user}>".encode(), 250)
            await self.command(b"DATA", 354)
            body = (f"From: {self.user}\r\nTo: {self.user}\r\nSubject: load {n}\r\n"
                    f"Message-ID: <{n}.{self.rng.random()}@load.example>\r\n\r\nlight load\r\n.\r\n")
            await self.command(body.encode()[:-2], 250)
        elif n % 2:
            await self.command(b"NOOP", 250)
        else:
            await self.command(b"RSET", 250)

    async def logout(self) -> None:
        await self.command(b"QUIT", 221)


async def drive(server: Server, args: argparse.Namespace, stats: Stats) -> dict[str, float]:
    total = args.connections
    split = {"imap": int(total * 0.45), "pop3": int(total * 0.25)}
    split["smtp"] = total - split["imap"] - split["pop3"]
    kinds: list[tuple[type[Session], int]] = []
    for proto, count in split.items():
        cls = {"imap": IMAPSession, "pop3": POP3Session, "smtp": SMTPSession}[proto]
        kinds += [(cls, i) for i in range(count)]
    random.Random(1).shuffle(kinds)
    ports = {"imap": server.ports["imap"], "pop3": server.ports["pop3"], "smtp": server.ports["submission"]}
    ramp = total / args.rate
    start = time.monotonic()
    stop_at = start + ramp + args.hold
    tasks = []
    for n, (cls, i) in enumerate(kinds):
        # POP3 locks the maildrop: one POP3 session per user.
        user = server.addresses[i % len(server.addresses)]
        source = "127.0.0.1" if args.sources == 1 else f"127.0.0.{2 + n % args.sources}"
        tasks.append(asyncio.create_task(cls("127.0.0.1", ports[cls.proto], source, user, stats, args.think,
                                             stop_at).run()))
        await asyncio.sleep(1.0 / args.rate)
    ramped = time.monotonic()
    await asyncio.wait_for(asyncio.gather(*tasks), timeout=ramp + args.hold + 120)
    return {"ramp": ramped - start, "hold_start": ramped, "stop_at": stop_at, "end": time.monotonic()}


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--connections", type=int, default=2000)
    parser.add_argument("--hold", type=float, default=60.0, help="seconds all sessions stay connected")
    parser.add_argument("--think", type=float, default=1.0, help="mean seconds between commands per session")
    parser.add_argument("--rate", type=float, default=40.0, help="new connections per second while ramping")
    parser.add_argument("--workers", type=int, default=2)  # the default on this 2-core machine
    parser.add_argument("--sources", type=int, default=1,
                        help="1: connect from 127.0.0.1; N: from 127.0.0.2... (needs TLS: plaintext "
                             "login is allowed from 127.0.0.1 only, so N > 1 fails the logins)")
    parser.add_argument("--users", type=int, default=500)
    parser.add_argument("--mail-every", type=int, default=10,
                        help="SMTP sessions send a message to themselves every Nth command (0: never, "
                             "so the mailboxes do not grow between rounds)")
    parser.add_argument("--keep", action="store_true", help="keep the data directory and twistd.log")
    parser.add_argument("--rounds", type=int, default=2,
                        help="repeat the whole load; RSS after round 2 vs round 1 tells a leak from "
                             "memory the allocator keeps")
    args = parser.parse_args()
    if args.users < int(args.connections * 0.25):
        parser.error("--users must be at least the number of POP3 sessions (a quarter of --connections)")

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, args.connections * 2 + 1000))
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))  # inherited by the daemon too
    if want < args.connections + 200:
        raise SystemExit(f"RLIMIT_NOFILE hard limit {hard} is too low for {args.connections} connections")

    SMTPSession.mail_every = args.mail_every
    workdir = tempfile.mkdtemp(prefix="xmail-load-")
    server = Server(workdir, args.workers, args.users)
    print(f"data in {workdir}; {args.connections} connections, hold {args.hold:.0f} s, think {args.think} s, "
          f"{args.workers} workers, {args.users} users, mail every {args.mail_every} SMTP commands")
    print(f"created {args.users} users in {server.create_users():.1f} s")
    server.start()
    stats = Stats()
    rounds: list[tuple[Stats, dict[str, float], float]] = []
    rss: dict[str, tuple[int, int]] = {}
    sampler_stop = threading.Event()
    peak = [(0, 0)]

    def sample() -> None:
        while not sampler_stop.is_set():
            now = server.memory()
            peak[0] = (max(peak[0][0], now[0]), max(peak[0][1], now[1]))
            time.sleep(0.25)

    try:
        # Baseline: after a few sessions of each kind warmed the code paths.
        warm = argparse.Namespace(**{**vars(args), "connections": 30, "hold": 2.0, "rate": 30.0})
        asyncio.run(drive(server, warm, Stats()))
        time.sleep(2)
        rss["baseline"] = server.memory()
        peak[0] = rss["baseline"]
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        elapsed = 0.0
        for round_ in range(1, args.rounds + 1):
            stats = Stats() if round_ > 1 else stats
            t0 = time.monotonic()
            times = asyncio.run(drive(server, args, stats))
            elapsed = time.monotonic() - t0
            rss[f"peak round {round_}"] = peak[0]
            time.sleep(5)
            rss[f"5 s after round {round_} closed"] = server.memory()
            rounds.append((stats, times, elapsed))
        sampler_stop.set()
        sampler.join()
        time.sleep(10)
        rss["15 s after the last close"] = server.memory()
        tracebacks = server.log_text().count("Traceback")
    finally:
        server.stop()
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)

    for round_, (stats, times, elapsed) in enumerate(rounds, 1):
        total_ops = sum(stats.ops.values())
        total_errors = sum(stats.errors.values())
        print(f"\nround {round_}: ramp {times['ramp']:.1f} s, run {elapsed:.1f} s, "
              f"peak open connections {stats.peak_open}")
        print(f"errors: {total_errors} {dict(stats.errors)}; temporary login refusals retried: "
              f"{sum(stats.login_retries.values())} {dict(stats.login_retries)}")
        for sample_text in stats.samples:
            print("  ", sample_text)
        print("| protocol | connected | logged in | commands | commands/s | p50 ms | p99 ms |")
        print("|---|---|---|---|---|---|---|")
        for proto in ("imap", "pop3", "smtp"):
            lat = stats.latency[proto]
            print(f"| {proto} | {stats.connected[proto]} | {stats.logged_in[proto]} | {stats.ops[proto]} | "
                  f"{stats.ops[proto] / elapsed:.0f} | {percentile(lat, 0.5) * 1000:.1f} | "
                  f"{percentile(lat, 0.99) * 1000:.1f} |")
        all_lat = [x for v in stats.latency.values() for x in v]
        print(f"| all | {sum(stats.connected.values())} | {sum(stats.logged_in.values())} | {total_ops} | "
              f"{total_ops / elapsed:.0f} | {percentile(all_lat, 0.5) * 1000:.1f} | "
              f"{percentile(all_lat, 0.99) * 1000:.1f} |")
    print(f"\nserver tracebacks in the log: {tracebacks}")
    print("server memory, workers summed (VmRSS / RssAnon):")
    for key, (vm, anon) in rss.items():
        print(f"  {key}: {vm / 1024:.1f} MB / {anon / 1024:.1f} MB")


if __name__ == "__main__":
    sys.exit(main())
