"""MX intake with mail protection on: xmail against Postfix, same scanners, same machine.

    python bench/protection_bench.py [--rounds 3] [--smtp-messages 60] [--workers 2]
                                     [--big-messages 8] [--big-mb 38]

Debian packages (this script installs nothing; run as root, Postfix starts
as root and drops to its own user):

    apt-get install postfix rspamd redis-server clamav-daemon clamav-milter

Started once, on free loopback ports, configured under a temporary
directory (tests/support/scanners.py, the suite's own harness):
- a loopback DNS server (twisted.names, empty zone: NXDOMAIN at once) that
  xmail's SPF/DKIM/DMARC checks and both rspamds use;
- clamd with a one-signature database (no download);
- two rspamds with the same configuration and their own redis: one
  scanned by xmail over HTTP (`/checkv2`), one with a milter proxy worker
  (`self_scan`) for Postfix;
- clamav-milter in front of the same clamd, for Postfix.

Each round runs the same load against both, alternating which goes first:
16 `smtp-source` sessions (C) each sending `--smtp-messages` 10 kB
messages to 16 local users.
- xmail: `twistd -n xmail` with `--workers` workers, `[filter] clamd` and
  `rspamd` on, and SPF/DKIM/DMARC checks too (more work than the Postfix
  side does: its rspamd runs no SPF/DMARC module).  250 after the
  message is scanned and in the Maildir with the index committed.
- Postfix 3.7: `smtpd_milters` = clamav-milter, then rspamd's milter;
  250 after both milters and the fsynced queue file, delivery to the
  Maildir follows (peer_bench.py's Postfix, with the milters added).
While xmail takes the load, a probe session sends SMTP NOOP every 20 ms
to it: the slowest and the 99th-percentile NOOP answer are the reactor
lag a client sees.

Last, memory with big messages (xmail only): `--big-messages` messages
of `--big-mb` MB, 4 sessions at a time, through clamd and rspamd; the
daemon's PSS (all its processes) is sampled every 0.1 s: before, the
peak, and after.  Flat means the peak does not grow with the number of
messages (streamed scanning, the pipeline's bounded pool).
"""

from __future__ import annotations

import argparse
import os
import shutil
import smtplib
import statistics
import subprocess
import sys
import threading
import time
from collections import defaultdict
from typing import Any

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path[:0] = [BENCH, REPO]

import memory_bench  # noqa: E402
import peer_bench  # noqa: E402
import workers_bench  # noqa: E402

from tests.support.dns import serve_zone  # noqa: E402
from tests.support.scanners import free_port, start_clamd, start_rspamd  # noqa: E402
from tests.workers.daemon import WorkerDaemon  # noqa: E402

DOMAIN = peer_bench.DOMAIN
USERS = peer_bench.USERS


class Scanners:
    """clamd, two rspamds (HTTP for xmail, milter for Postfix), clamav-milter."""

    def __init__(self, work: str, dns_port: int):
        self.clamd = start_clamd(os.path.join(work, "clamd"), stream_max_length=64 * 1024 * 1024)
        self.rspamd = start_rspamd(os.path.join(work, "rspamd-http"), dns_port)
        self.rspamd_milter_port = free_port()
        self.rspamd_milter = start_rspamd(os.path.join(work, "rspamd-milter"), dns_port,
                                          milter_port=self.rspamd_milter_port)
        self.clamav_milter_port = free_port()
        conf = os.path.join(work, "clamav-milter.conf")
        with open(conf, "w") as f:
            f.write(f"MilterSocket inet:{self.clamav_milter_port}@127.0.0.1\n"
                    f"ClamdSocket tcp:127.0.0.1:{self.clamd.port}\n"
                    "Foreground yes\nUser root\nOnInfected Reject\nOnFail Defer\n"
                    f"MaxFileSize 64M\nLogFile {work}/clamav-milter.log\nAddHeader Replace\n")
        self.clamav_milter = subprocess.Popen(["clamav-milter", "-c", conf], stdout=subprocess.DEVNULL,
                                              stderr=subprocess.STDOUT)
        peer_bench.wait_port(self.clamav_milter_port)

    def stop(self) -> None:
        self.clamav_milter.terminate()
        self.clamav_milter.wait(timeout=30)
        for daemon in (self.rspamd, self.rspamd_milter, self.clamd):
            daemon.stop()


class Xmail(peer_bench.Xmail):
    def __init__(self, work: str, workers: int, scanners: Scanners, dns_port: int):
        os.makedirs(os.path.join(work, "xmail"))
        extra = (f'[filter]\nclamd = "{scanners.clamd.tcp}"\nrspamd = "{scanners.rspamd.url}"\n'
                 f'[dns]\nservers = ["127.0.0.1:{dns_port}"]\n')
        self.daemon = WorkerDaemon(os.path.join(work, "xmail"), workers=workers, extra=extra,
                                   limits=workers_bench.NO_CAPS)


class Postfix(peer_bench.Peer):
    name = "postfix+milters"

    def __init__(self, work: str, scanners: Scanners):
        super().__init__(work)
        self.scanners = scanners

    def _postfix_conf(self) -> str:
        conf = super()._postfix_conf()
        with open(os.path.join(conf, "main.cf"), "a") as f:
            f.write(f"smtpd_milters = inet:127.0.0.1:{self.scanners.clamav_milter_port}, "
                    f"inet:127.0.0.1:{self.scanners.rspamd_milter_port}\n"
                    "milter_default_action = tempfail\nmilter_protocol = 6\n"
                    "message_size_limit = 52428800\nvirtual_mailbox_limit = 0\n")
        return conf

    def start(self) -> None:
        # Postfix only (peer_bench's Peer also starts Dovecot).
        for name, owner in (("postfix-spool", "root"), ("postfix-data", "postfix")):
            os.makedirs(os.path.join(self.work, name))
            peer_bench._own(os.path.join(self.work, name), owner)
        self.postfix_conf = self._postfix_conf()
        for command in ("post-install create-missing", "start"):
            out = subprocess.run(["postfix", "-c", self.postfix_conf, *command.split()],
                                 capture_output=True, text=True)
            if out.returncode != 0:
                raise SystemExit(f"postfix {command} failed: {out.stderr}; see {self.work}/postfix.log")
        peer_bench.wait_port(self.ports["smtp"])

    def cpu(self) -> float:
        total = super().cpu()
        for pid in peer_bench._pids_of(("clamav-milter",)):
            total += peer_bench.smtp_bench.cpu_seconds(pid)
        return total


class LagProbe:
    """One more SMTP session sending NOOP every 20 ms; answer times."""

    def __init__(self, port: int):
        self.port = port
        self.times: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LagProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(30)

    def _run(self) -> None:
        with smtplib.SMTP("127.0.0.1", self.port, timeout=60) as smtp:
            while not self._stop.wait(0.02):
                started = time.perf_counter()
                smtp.noop()
                self.times.append(time.perf_counter() - started)

    def figures(self) -> tuple[float, float]:
        ordered = sorted(self.times) or [float("nan")]
        return ordered[-1] * 1000, ordered[int(len(ordered) * 0.99) - 1 if len(ordered) > 1 else 0] * 1000


def intake_round(server: Any, per_session: int, results: dict[str, dict[str, list[float]]]) -> None:
    total = peer_bench.SMTP_SESSIONS * per_session
    probe = LagProbe(server.ports["smtp"]) if server.name == "xmail" else None
    with peer_bench.Meter(server) as m:
        if probe is not None:
            with probe:
                peer_bench.smtp_intake(server.ports["smtp"], per_session)
        else:
            peer_bench.smtp_intake(server.ports["smtp"], per_session)
    rate = total / m.seconds
    results["MX intake msgs/s"][server.name].append(rate)
    line = f"  {server.name}: {total} msgs in {m.seconds:.1f} s = {rate:.0f}/s; {m.cpu()}"
    if probe is not None:
        worst, p99 = probe.figures()
        results["reactor lag max ms"][server.name].append(worst)
        results["reactor lag p99 ms"][server.name].append(p99)
        line += f"; NOOP answer max {worst:.0f} ms, p99 {p99:.0f} ms over {len(probe.times)}"
    print(line, flush=True)


def daemon_pss(daemon: WorkerDaemon) -> int:
    total = 0
    for pid in memory_bench.process_tree(daemon.proc.pid):
        try:
            total += memory_bench.pss(pid).get("Pss", 0)
        except OSError:
            pass
    return total


def big_messages(server: Xmail, count: int, megabytes: int) -> None:
    line = b"0123456789 abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ 0123456789 abc\r\n"
    body = line * (megabytes * 1024 * 1024 // len(line))
    message = (b"From: sender@client.example\r\nSubject: big\r\nMessage-ID: <big@client.example>\r\n\r\n"
               + body)
    samples: list[int] = []
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(0.1):
            samples.append(daemon_pss(server.daemon))

    def send(n: int) -> None:
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=600) as smtp:
            smtp.sendmail("sender@client.example", [USERS[n % len(USERS)]], message)

    before = daemon_pss(server.daemon)
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.perf_counter()
    peaks = []
    for start in range(0, count, 4):
        senders = [threading.Thread(target=send, args=(n,)) for n in range(start, min(count, start + 4))]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        peaks.append(max(samples, default=before))
    stop.set()
    sampler.join()
    after = daemon_pss(server.daemon)
    seconds = time.perf_counter() - started
    print(f"big messages: {count} x {megabytes} MB, 4 at a time, in {seconds:.1f} s; xmail PSS before "
          f"{before / 1e6:.0f} MB, peak after each batch of 4: "
          + ", ".join(f"{p / 1e6:.0f}" for p in peaks) + f" MB; after {after / 1e6:.0f} MB", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--smtp-messages", type=int, default=60)
    parser.add_argument("--big-messages", type=int, default=8)
    parser.add_argument("--big-mb", type=int, default=38)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root: Postfix starts as root and drops privileges")
    for tool in ("postfix", "smtp-source", "rspamd", "redis-server", "clamd", "clamav-milter"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} not found: apt-get install postfix rspamd redis-server "
                             "clamav-daemon clamav-milter")
    print(f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; xmail workers={args.workers}; "
          f"{args.rounds} rounds", flush=True)
    zone = serve_zone({})
    dns = next(zone)
    scanners = Scanners(workers_bench.workdir("protection-bench-"), dns.port)
    results: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    makers = [lambda w: Xmail(w, args.workers, scanners, dns.port), lambda w: Postfix(w, scanners)]
    try:
        for r in range(args.rounds):
            print(f"round {r + 1}:", flush=True)
            for make in makers if r % 2 == 0 else makers[::-1]:
                server = make(workers_bench.workdir("protection-bench-"))
                try:
                    server.start()
                    pair = (("xmail's", scanners.rspamd), ("postfix's", scanners.rspamd_milter))
                    scanned = [r.stat().get("scanned", 0) for _name, r in pair]
                    intake_round(server, args.smtp_messages, results)
                    # Proof the load was scanned: the server's own rspamd counted it.
                    print("    rspamd scanned: " + ", ".join(
                        f"{name} +{r.stat().get('scanned', 0) - before}"
                        for (name, r), before in zip(pair, scanned, strict=True)), flush=True)
                finally:
                    server.stop()
        print(f"\nmedians of {args.rounds} rounds (ratio: xmail relative to Postfix; > 1 = xmail better)")
        for figure, by_server in results.items():
            ours = statistics.median(by_server["xmail"])
            theirs = by_server.get(Postfix.name)
            if theirs:
                print(f"{figure:<22} {ours:>9.1f} {statistics.median(theirs):>9.1f} "
                      f"{ours / statistics.median(theirs):>5.2f}x", flush=True)
            else:
                print(f"{figure:<22} {ours:>9.1f}", flush=True)
        if args.big_messages:
            server = Xmail(workers_bench.workdir("protection-bench-"), args.workers, scanners, dns.port)
            try:
                server.start()
                big_messages(server, args.big_messages, args.big_mb)
            finally:
                server.stop()
    finally:
        scanners.stop()
        zone.close()
        workers_bench.remove_workdirs()


if __name__ == "__main__":
    main()
