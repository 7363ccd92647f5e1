"""Delivery with filter rules against delivery without (issue 18).

    python bench/sieve_bench.py [--rounds 3] [--smtp-messages 60] [--workers 2]

One `twistd -n xmail` (`--workers` workers) with 16 users, its DNS a
loopback server (SPF/DKIM/DMARC run on MX: instant NXDOMAIN answers); each
round runs
the same MX load twice, alternating which goes first: 16 `smtp-source`
sessions (Postfix's C load generator) each sending `--smtp-messages` 10 kB
messages to its own user,
- without scripts, and
- with scripts: every user has a 20-rule active script (header, address,
  envelope, size, body-free tests as Roundcube writes them; none matches,
  so all 20 run and the implicit keep files the message) and the domain
  has a "before" script (a spamtest and a List-Id rule).
Scripts are put and removed with `xmailctl sieve` between the phases.  The
figure is the median msgs/s of each and their ratio (goal >= 0.9).

Also: Pigeonhole's `sieve-test` on the same script and a message, one
process per message (its fixed start-up cost dominates), against xmail's
`evaluate` per message in-process: a sanity figure for the interpreter, not
a delivery comparison.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
sys.path[:0] = [BENCH, REPO]

import peer_bench  # noqa: E402
import workers_bench  # noqa: E402

from tests.support.dns import serve_zone  # noqa: E402
from tests.workers.daemon import WorkerDaemon  # noqa: E402

DOMAIN = peer_bench.DOMAIN
USERS = peer_bench.USERS[:peer_bench.SMTP_SESSIONS]

RULES = (
    'if anyof (header :contains "subject" "project-{i}", address :is "from" "boss{i}@corp.example") {{\n'
    '  fileinto "Projects/P{i}"; stop;\n}}\n',
    'if allof (header :matches "x-mailer" "*Mailer-{i}*", size :over 5M) {{ discard; stop; }}\n',
    'if envelope :domain :is "from" "list{i}.example" {{ fileinto :copy "Lists/L{i}"; }}\n',
    'if header :count "ge" :comparator "i;ascii-numeric" "received" "{n}" {{ addflag "\\\\Flagged"; }}\n',
)
USER_SCRIPT = """require ["fileinto", "imap4flags", "envelope", "body", "relational",
         "comparator-i;ascii-numeric", "variables", "copy"];
""" + "".join(RULES[i % 4].format(i=i, n=40 + i) for i in range(20))

DOMAIN_SCRIPT = """require ["imap4flags", "spamtest", "relational", "comparator-i;ascii-numeric", "fileinto"];
if spamtest :value "ge" :comparator "i;ascii-numeric" "8" { fileinto "Junk"; stop; }
if exists "list-id" { addflag "$List"; }
"""


class Xmail(peer_bench.Xmail):
    """peer_bench's daemon with its lookups (SPF, DKIM, DMARC on MX) sent to
    a loopback DNS server that answers NXDOMAIN at once: no waiting on a
    resolver that cannot reach the Internet."""

    def __init__(self, work: str, workers: int, dns_port: int):
        os.makedirs(os.path.join(work, "xmail"))
        self.daemon = WorkerDaemon(os.path.join(work, "xmail"), workers=workers,
                                   extra=f'[dns]\nservers = ["127.0.0.1:{dns_port}"]\n',
                                   limits=workers_bench.NO_CAPS)


def ctl(daemon: object, *args: str, stdin: str | None = None) -> None:
    daemon.ctl(*args, stdin=stdin)  # type: ignore[attr-defined]


def install(daemon: object, work: str) -> None:
    user_file = os.path.join(work, "rules.sieve")
    with open(user_file, "w") as f:
        f.write(USER_SCRIPT)
    domain_file = os.path.join(work, "domain.sieve")
    with open(domain_file, "w") as f:
        f.write(DOMAIN_SCRIPT)
    for user in USERS:
        ctl(daemon, "sieve", "put", "--user", user, "rules", user_file)
        ctl(daemon, "sieve", "activate", "--user", user, "rules")
    ctl(daemon, "sieve", "put", "--domain", DOMAIN, "--before", "policy", domain_file)


def uninstall(daemon: object) -> None:
    for user in USERS:
        ctl(daemon, "sieve", "remove", "--user", user, "rules")
    ctl(daemon, "sieve", "remove", "--domain", DOMAIN, "--before", "policy")


def interpreter_figures(work: str, count: int = 200) -> tuple[float, float]:
    """(xmail evaluate µs per message, sieve-test ms per message)."""
    from datetime import UTC, datetime

    from xmail.sieve.compiler import compile_script
    from xmail.sieve.interpreter import evaluate
    from xmail.sieve.message import SieveMessage

    data = (b"From: a@b.example\r\nTo: user0@bench.example\r\nSubject: hello\r\n"
            b"Message-ID: <1@b.example>\r\n\r\n" + b"x" * 10000 + b"\r\n")
    script = compile_script(USER_SCRIPT)
    started = time.perf_counter()
    for _ in range(count):
        evaluate([script], SieveMessage(
            header_section=data.split(b"\r\n\r\n")[0] + b"\r\n\r\n", body=lambda: data, size=len(data),
            mail_from="a@b.example", rcpt_to="user0@bench.example", auth=None, spamtest=0, virustest=0,
            mailbox_exists=lambda name: True, now=datetime.now(UTC), environment={}))
    ours = (time.perf_counter() - started) / count * 1e6
    script_file = os.path.join(work, "s.sieve")
    mail_file = os.path.join(work, "m.eml")
    with open(script_file, "w") as f:
        f.write(USER_SCRIPT)
    with open(mail_file, "wb") as f:
        f.write(data)
    conf = os.path.join(work, "sieve-test.conf")
    with open(conf, "w") as f:
        f.write(f"mail_uid = 65534\nmail_gid = 65534\nfirst_valid_uid = 0\nfirst_valid_gid = 0\n"
                f"mail_location = maildir:{work}/mail\nlog_path = /dev/null\n")
    os.chmod(work, 0o777)
    for name in (script_file, mail_file, conf):
        os.chmod(name, 0o644)
    runs = max(20, count // 10)
    started = time.perf_counter()
    for _ in range(runs):
        subprocess.run(["sieve-test", "-c", conf, script_file, mail_file], capture_output=True, check=True)
    theirs = (time.perf_counter() - started) / runs * 1000
    return ours, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smtp-messages", type=int, default=60)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    work = tempfile.mkdtemp(prefix="sieve-bench-")
    zone = serve_zone({})
    dns = next(zone)
    server = Xmail(work, args.workers, dns.port)
    server.start()
    rates: dict[str, list[float]] = {"without scripts": [], "with scripts": []}
    total = peer_bench.SMTP_SESSIONS * args.smtp_messages
    try:
        for r in range(args.rounds):
            order = ["without scripts", "with scripts"] if r % 2 == 0 else ["with scripts", "without scripts"]
            print(f"round {r + 1}", flush=True)
            for phase in order:
                if phase == "with scripts":
                    install(server.daemon, work)
                with peer_bench.Meter(server) as m:
                    peer_bench.smtp_intake(server.ports["smtp"], args.smtp_messages)
                if phase == "with scripts":
                    uninstall(server.daemon)
                rate = total / m.seconds
                rates[phase].append(rate)
                print(f"  {phase}: {total} msgs in {m.seconds:.1f} s = {rate:.0f}/s; {m.cpu()}", flush=True)
        ours, theirs = interpreter_figures(work)
    finally:
        server.stop()
        zone.close()
    without = statistics.median(rates["without scripts"])
    with_ = statistics.median(rates["with scripts"])
    print()
    print(f"| figure (median of {args.rounds}) | without scripts | with scripts | ratio |")
    print("|---|---|---|---|")
    print(f"| MX delivery msgs/s, 16 sessions, 10 kB | {without:.0f} "
          f"({min(rates['without scripts']):.0f}-{max(rates['without scripts']):.0f}) | {with_:.0f} "
          f"({min(rates['with scripts']):.0f}-{max(rates['with scripts']):.0f}) | "
          f"{with_ / without:.2f}x (goal >= 0.9) |")
    print(f"| one 20-rule evaluation: xmail in-process | {ours:.0f} µs | sieve-test process | "
          f"{theirs:.1f} ms |")


if __name__ == "__main__":
    main()
