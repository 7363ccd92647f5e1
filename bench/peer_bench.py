"""xmail against its peers on this machine: Dovecot (IMAP, POP3) and Postfix (SMTP).

    python bench/peer_bench.py [--rounds 3] [--only bulk,pop3,mixed,smtp] [--workers 2]
                               [--bulk-messages 20000] [--pop3-messages 1000]
                               [--mixed-seconds 10] [--smtp-messages 200]

The peers are Debian's packages; this script installs nothing:

    apt-get install dovecot-imapd dovecot-pop3d postfix

(postfix also brings `smtp-source`, the C SMTP load generator used here).
Run as root: Dovecot and Postfix start as root and drop to their own users
(`dovecot`, `dovenull`, `postfix`), as they do in production.  Every round
writes fresh configurations under a temporary directory, on free loopback
ports, and starts:

- xmail: a real `twistd -n xmail --config` with `--workers` workers
  (tests/workers/daemon.py), users stored with xmail's argon2id hashes.
- Dovecot 2.3: Maildir under the temporary directory, `mail_fsync =
  optimized` (its default: saved mail is fsynced, flag changes are not),
  passwords in a passwd-file in PLAIN (no hashing cost at login; xmail
  verifies argon2id, once per process and password, then from its cache).
- Postfix 3.7: smtpd on loopback delivering through the `virtual` transport
  into Maildirs under the temporary directory (no Dovecot LMTP: the two
  delivery paths then do the same work, SMTP in -> Maildir file).  Postfix
  answers 250 once the queue file is fsynced; its delivery to the Maildir
  (also fsynced) follows asynchronously.  xmail answers 250 once the
  message is in the Maildir and the index is committed.

The same load runs against xmail and the peer, alternating in each round
(xmail first in odd rounds, the peer first in even ones); medians over
the rounds are printed at the end, with the ratio xmail / peer:

1. bulk: 10 IMAP clients APPEND `--bulk-messages` messages (~2 kB, LITERAL+)
   into their INBOX, one command at a time each: seconds and messages/s.
2. pop3: 10 POP3 clients each RETR the first `--pop3-messages` of those
   messages, one at a time: messages/s.
3. mixed: 10 IMAP clients loop LIST, STATUS, SELECT, FETCH 1:20 (FLAGS
   ENVELOPE), STORE 1:5 +/-FLAGS (\\Seen) (alternating, so every STORE
   changes flags), APPEND, UID STORE +FLAGS.SILENT (\\Deleted) on the new
   message, EXPUNGE, and LOGOUT + new connection + LOGIN every 20 loops,
   for `--mixed-seconds`: commands answered per second, and the average
   latency per command.
4. smtp: 16 `smtp-source` sessions, `--smtp-messages` 10 kB messages each, to
   16 local users: messages/s.

The client side is one asyncio process (IMAP, POP3) or C (SMTP); its CPU
share is printed with each figure so a saturated load generator shows.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import pwd
import re
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path[:0] = [BENCH, REPO]

import imap_bench  # noqa: E402
import smtp_bench  # noqa: E402
import workers_bench  # noqa: E402

from tests.workers.daemon import PASSWORD, WorkerDaemon  # noqa: E402

DOMAIN = "bench.example"
IMAP_CLIENTS = 10
SMTP_SESSIONS = 16
USERS = [f"user{i}@{DOMAIN}" for i in range(max(IMAP_CLIENTS, SMTP_SESSIONS))]
RELOGIN_EVERY = 20  # mixed loops per connection


def free_port() -> int:
    return smtp_bench.free_port()


def wait_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise SystemExit(f"nothing listens on 127.0.0.1:{port} after {timeout:.0f} s")


# --- the servers -----------------------------------------------------------------------------


class Xmail:
    name = "xmail"

    def __init__(self, work: str, workers: int):
        os.makedirs(os.path.join(work, "xmail"))
        self.daemon = WorkerDaemon(os.path.join(work, "xmail"), workers=workers,
                                   limits=workers_bench.NO_CAPS)

    def start(self) -> None:
        workers_bench.add_users(self.daemon, DOMAIN, USERS)
        self.daemon.start()
        self.ports = {"imap": self.daemon.ports["imap"], "pop3": self.daemon.ports["pop3"],
                      "smtp": self.daemon.ports["smtp"]}

    def cpu(self) -> float:
        return workers_bench.cpu_seconds(self.daemon)

    def stop(self) -> None:
        if self.daemon.proc is not None:
            self.daemon.stop()


def _own(path: str, user: str) -> None:
    entry = pwd.getpwnam(user)
    for root, dirs, files in os.walk(path):
        for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
            os.chown(name, entry.pw_uid, entry.pw_gid)


class Peer:
    """Dovecot for IMAP and POP3, Postfix for SMTP; both from Debian."""

    name = "dovecot/postfix"

    def __init__(self, work: str):
        self.work = os.path.join(work, "peer")
        os.makedirs(self.work)
        os.chmod(work, 0o755)
        os.chmod(self.work, 0o755)
        self.ports = {"imap": free_port(), "pop3": free_port(), "smtp": free_port()}
        self.procs: list[subprocess.Popen[bytes]] = []

    def _dovecot_conf(self) -> str:
        w = self.work
        with open(os.path.join(w, "passwd"), "w") as f:
            f.writelines(f"{user}:{{PLAIN}}{PASSWORD}::::::\n" for user in USERS)
        os.makedirs(os.path.join(w, "dmail"))
        _own(os.path.join(w, "dmail"), "dovecot")
        conf = os.path.join(w, "dovecot.conf")
        with open(conf, "w") as f:
            f.write(f"""\
base_dir = {w}/dovecot-run
state_dir = {w}/dovecot-state
log_path = {w}/dovecot.log
protocols = imap pop3
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{w}/dmail/%u
mail_fsync = optimized
mail_max_userip_connections = 1000
first_valid_uid = 1
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {w}/passwd
}}
userdb {{
  driver = static
  args = uid=dovecot gid=dovecot home={w}/dmail/%u
}}
service imap-login {{
  inet_listener imap {{
    port = {self.ports["imap"]}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service pop3-login {{
  inet_listener pop3 {{
    port = {self.ports["pop3"]}
  }}
  inet_listener pop3s {{
    port = 0
  }}
}}
""")
        return conf

    def _postfix_conf(self) -> str:
        w = self.work
        conf = os.path.join(w, "postfix")
        os.makedirs(conf)
        vmail = os.path.join(w, "vmail")
        os.makedirs(vmail)
        _own(vmail, "dovecot")
        with open(os.path.join(conf, "vmailbox"), "w") as f:
            f.writelines(f"{user} {DOMAIN}/{user.split('@')[0]}/\n" for user in USERS)
        dovecot = pwd.getpwnam("dovecot")
        with open(os.path.join(conf, "main.cf"), "w") as f:
            f.write(f"""\
compatibility_level = 3.6
queue_directory = {w}/postfix-spool
data_directory = {w}/postfix-data
mail_owner = postfix
myhostname = mx.{DOMAIN}
mydestination =
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
alias_maps =
alias_database =
local_recipient_maps =
maillog_file = {w}/postfix.log
maillog_file_prefixes = {w}
virtual_mailbox_domains = {DOMAIN}
virtual_mailbox_base = {vmail}
virtual_mailbox_maps = texthash:{conf}/vmailbox
virtual_uid_maps = static:{dovecot.pw_uid}
virtual_gid_maps = static:{dovecot.pw_gid}
virtual_minimum_uid = 1
smtpd_client_connection_count_limit = 0
smtpd_client_message_rate_limit = 0
smtpd_banner = $myhostname ESMTP
""")
        # Debian's master.cf, its core services only, none chrooted (the
        # chroot would need copies of /etc files under the spool), smtpd on
        # our loopback port.
        lines = []
        with open("/etc/postfix/master.cf") as f:
            for line in f:
                fields = line.split()
                if line[:1] in ("#", " ", "\t") or len(fields) < 8 or fields[7] not in _POSTFIX_CORE:
                    continue
                if fields[:2] == ["smtp", "inet"]:
                    fields[0] = f"127.0.0.1:{self.ports['smtp']}"
                fields[4] = "n"
                lines.append(" ".join(fields) + "\n")
        with open(os.path.join(conf, "master.cf"), "w") as f:
            f.writelines(lines)
        return conf

    def start(self) -> None:
        for name, owner in (("postfix-spool", "root"), ("postfix-data", "postfix")):
            os.makedirs(os.path.join(self.work, name))
            _own(os.path.join(self.work, name), owner)
        self.dovecot_conf = self._dovecot_conf()
        self.postfix_conf = self._postfix_conf()
        log = open(os.path.join(self.work, "dovecot.out"), "ab")  # noqa: SIM115
        self.procs.append(subprocess.Popen(["dovecot", "-F", "-c", self.dovecot_conf],
                                           stdout=log, stderr=subprocess.STDOUT))
        for command in ("post-install create-missing", "start"):
            out = subprocess.run(["postfix", "-c", self.postfix_conf, *command.split()],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"postfix {command} failed; see {self.work}/postfix.log")
        for port in self.ports.values():
            wait_port(port)

    def cpu(self) -> float:
        """CPU of the peers' live processes (short-lived children that
        already exited are missing: a lower bound)."""
        total = 0.0
        for pid in _pids_of(("dovecot", "imap", "pop3", "imap-login", "pop3-login", "auth", "anvil",
                             "master", "smtpd", "cleanup", "qmgr", "virtual", "trivial-rewrite")):
            total += smtp_bench.cpu_seconds(pid)
        return total

    def stop(self) -> None:
        if hasattr(self, "postfix_conf"):
            subprocess.run(["postfix", "-c", self.postfix_conf, "stop"], capture_output=True)
        for proc in self.procs:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)


_POSTFIX_CORE = {"smtpd", "pickup", "cleanup", "qmgr", "trivial-rewrite", "bounce", "verify", "flush",
                 "proxymap", "smtp", "showq", "error", "discard", "local", "virtual", "anvil", "scache",
                 "postlogd"}


def _pids_of(names: tuple[str, ...]) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/comm") as f:
                    if f.read().strip() in names:
                        pids.append(int(entry))
            except OSError:
                pass
    return pids


# --- the clients -----------------------------------------------------------------------------


class Imap(imap_bench.AsyncClient):
    """imap_bench's client, also handing back the tagged line (APPENDUID)."""

    async def run(self, text: bytes) -> tuple[list[bytes], bytes]:
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
                return lines, line
            lines.append(line)

    async def login(self, user: str) -> None:
        await self.run(f'LOGIN {user} "{PASSWORD}"'.encode())

    def close(self) -> None:
        self.writer.close()


def append_command(i: int, user: str) -> bytes:
    body = imap_bench.message(i, user)
    return b"APPEND INBOX {%d+}\r\n" % len(body) + body


async def bulk_append(port: int, total: int) -> None:
    per = total // IMAP_CLIENTS

    async def one(user: str) -> None:
        c = await Imap.connect(port)
        await c.login(user)
        for i in range(per):
            await c.run(append_command(i, user))
        await c.run(b"LOGOUT")
        c.close()

    await asyncio.gather(*(one(user) for user in USERS[:IMAP_CLIENTS]))


async def pop3_retr(port: int, count: int) -> None:
    async def expect_ok(reader: asyncio.StreamReader) -> bytes:
        line = await reader.readline()
        if not line.startswith(b"+OK"):
            raise RuntimeError(line)
        return line

    async def one(user: str) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
        await expect_ok(reader)
        writer.write(f"USER {user}\r\n".encode())
        await expect_ok(reader)
        writer.write(f"PASS {PASSWORD}\r\n".encode())
        await expect_ok(reader)
        for n in range(1, count + 1):
            writer.write(b"RETR %d\r\n" % n)
            await expect_ok(reader)
            await reader.readuntil(b"\r\n.\r\n")
        writer.write(b"QUIT\r\n")
        await expect_ok(reader)
        writer.close()

    await asyncio.gather(*(one(user) for user in USERS[:IMAP_CLIENTS]))


async def mixed(port: int, seconds: float) -> tuple[int, dict[str, list[float]]]:
    deadline = time.perf_counter() + seconds
    latency: dict[str, list[float]] = defaultdict(list)
    answered = 0
    exists = re.compile(rb"^\* (\d+) EXISTS$")
    appenduid = re.compile(rb"\[APPENDUID \d+ (\d+)\]")

    async def timed(c: Imap, name: str, text: bytes) -> tuple[list[bytes], bytes]:
        nonlocal answered
        sent = time.perf_counter()
        result = await c.run(text)
        done = time.perf_counter()
        if done <= deadline:
            answered += 1
            latency[name].append(done - sent)
        return result

    async def one(user: str, offset: int) -> None:
        c: Imap | None = None
        i = 0
        while time.perf_counter() < deadline:
            if i % RELOGIN_EVERY == 0:
                if c is not None:
                    await timed(c, "LOGOUT", b"LOGOUT")
                    c.close()
                c = await Imap.connect(port)
                await timed(c, "LOGIN", f'LOGIN {user} "{PASSWORD}"'.encode())
            assert c is not None
            i += 1
            await timed(c, "LIST", b'LIST "" "*"')
            await timed(c, "STATUS", b"STATUS INBOX (MESSAGES UNSEEN UIDNEXT)")
            untagged, _ = await timed(c, "SELECT", b"SELECT INBOX")
            count = next(int(m.group(1)) for m in map(exists.match, untagged) if m)
            if count >= 20:
                await timed(c, "FETCH", b"FETCH 1:20 (FLAGS ENVELOPE)")
                sign = b"+" if (i + offset) % 2 else b"-"
                await timed(c, "STORE", b"STORE 1:5 " + sign + b"FLAGS (\\Seen)")
            _, tagged = await timed(c, "APPEND", append_command(100000 + i, user))
            uid = appenduid.search(tagged)
            if uid is not None:
                await timed(c, "STORE", b"UID STORE " + uid.group(1) + b" +FLAGS.SILENT (\\Deleted)")
                await timed(c, "EXPUNGE", b"EXPUNGE")
        if c is not None:
            c.close()

    await asyncio.gather(*(one(user, n) for n, user in enumerate(USERS[:IMAP_CLIENTS])))
    return answered, latency


def smtp_intake(port: int, per_session: int) -> None:
    processes = [
        subprocess.Popen(["smtp-source", "-d", "-s", "1", "-m", str(per_session), "-l", "10240",
                          "-M", "client.example", "-f", "sender@client.example",
                          "-t", USERS[i], f"127.0.0.1:{port}"],
                         stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(SMTP_SESSIONS)]
    outputs = [p.communicate()[0] for p in processes]
    failed = [out for p, out in zip(processes, outputs, strict=True) if p.returncode != 0]
    if failed:
        raise SystemExit(f"smtp-source failed: {failed[0][-500:]}")


# --- measuring --------------------------------------------------------------------------------


class Meter:
    """Wall time, the load generator's CPU (this process + C children)
    and the server's, around one workload."""

    def __init__(self, server: Any):
        self.server = server

    def __enter__(self) -> Meter:
        self.started = time.perf_counter()
        self.client = time.process_time() + _children_cpu()
        self.server_cpu = self.server.cpu()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.seconds = time.perf_counter() - self.started
        self.client_share = (time.process_time() + _children_cpu() - self.client) / self.seconds
        self.server_share = (self.server.cpu() - self.server_cpu) / self.seconds

    def cpu(self) -> str:
        return f"load generator CPU {self.client_share:.0%}, server {self.server_share:.0%} of a core"


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_round(server: Any, args: argparse.Namespace, results: dict[str, dict[str, list[float]]]) -> None:
    only = args.only
    name = server.name
    ports = server.ports
    if "bulk" in only or "pop3" in only or "mixed" in only:
        with Meter(server) as m:
            asyncio.run(bulk_append(ports["imap"], args.bulk_messages))
        rate = args.bulk_messages / m.seconds
        results["bulk APPEND s"][name].append(m.seconds)
        print(f"  {name}: bulk APPEND {args.bulk_messages} msgs in {m.seconds:.1f} s = {rate:.0f}/s; "
              f"{m.cpu()}", flush=True)
    if "pop3" in only:
        count = min(args.pop3_messages, args.bulk_messages // IMAP_CLIENTS)
        with Meter(server) as m:
            asyncio.run(pop3_retr(ports["pop3"], count))
        rate = count * IMAP_CLIENTS / m.seconds
        results["POP3 RETR msgs/s"][name].append(rate)
        print(f"  {name}: POP3 RETR {count * IMAP_CLIENTS} msgs = {rate:.0f}/s; {m.cpu()}", flush=True)
    if "mixed" in only:
        with Meter(server) as m:
            answered, latency = asyncio.run(mixed(ports["imap"], args.mixed_seconds))
        rate = answered / args.mixed_seconds
        results["IMAP mixed ops/s"][name].append(rate)
        for command, values in latency.items():
            results[f"  {command} avg ms"][name].append(statistics.fmean(values) * 1000)
        print(f"  {name}: IMAP mixed {answered} commands = {rate:.0f}/s; avg ms "
              + ", ".join(f"{c} {statistics.fmean(v) * 1000:.1f}" for c, v in sorted(latency.items()))
              + f"; {m.cpu()}", flush=True)
    if "smtp" in only:
        with Meter(server) as m:
            smtp_intake(ports["smtp"], args.smtp_messages)
        rate = SMTP_SESSIONS * args.smtp_messages / m.seconds
        results["SMTP intake msgs/s"][name].append(rate)
        print(f"  {name}: SMTP {SMTP_SESSIONS}x{args.smtp_messages} msgs = {rate:.0f}/s; {m.cpu()}",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", default="bulk,pop3,mixed,smtp")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--bulk-messages", type=int, default=20000)
    parser.add_argument("--pop3-messages", type=int, default=1000)
    parser.add_argument("--mixed-seconds", type=float, default=10.0)
    parser.add_argument("--smtp-messages", type=int, default=200)
    args = parser.parse_args()
    args.only = set(args.only.split(","))
    if os.geteuid() != 0:
        raise SystemExit("run as root: Dovecot and Postfix start as root and drop privileges")
    for tool in ("dovecot", "postfix", "smtp-source"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install dovecot-imapd dovecot-pop3d postfix")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; xmail workers={args.workers}; "
          f"{args.rounds} rounds", flush=True)
    results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    makers: list[Callable[[str], Any]] = [lambda w: Xmail(w, args.workers), Peer]
    try:
        for r in range(args.rounds):
            print(f"round {r + 1}:", flush=True)
            for make in makers if r % 2 == 0 else makers[::-1]:
                server = make(workers_bench.workdir("peer-bench-"))
                try:
                    server.start()
                    run_round(server, args, results)
                finally:
                    server.stop()
        print_medians(args.rounds, results)
    finally:
        workers_bench.remove_workdirs()  # after the table: removing 100,000s of files takes minutes


def print_medians(rounds: int, results: dict[str, dict[str, list[float]]]) -> None:
    print(f"\nmedians of {rounds} rounds (ratio: xmail relative to the peer; > 1 = xmail better)")
    print(f"{'figure':<22} {'xmail':>9} {'peer':>9} {'ratio':>6}")
    for figure, by_server in results.items():
        ours = statistics.median(by_server["xmail"]) if by_server["xmail"] else float("nan")
        theirs = statistics.median(by_server[Peer.name]) if by_server[Peer.name] else float("nan")
        lower_is_better = figure.endswith(" ms") or figure.endswith(" s")
        ratio = theirs / ours if lower_is_better else ours / theirs
        print(f"{figure:<22} {ours:>9.1f} {theirs:>9.1f} {ratio:>5.2f}x", flush=True)


if __name__ == "__main__":
    main()
