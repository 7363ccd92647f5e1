"""SORT and THREAD speed on a 100,000-message folder (issue #6).

    python bench/sort_bench.py [--messages 100000] [--dir DIR] [--out /work/notes/bench-sort.md]

A real MailStore folder is filled quickly (message files without fsync, the
index in large transactions, every message parsed by the store's own
parse_message so the cached headers are the real ones): varied senders and
recipients, RFC 2047 and Re:/Fwd:/[tag] subjects, Date fields in several
zones (some missing or broken), and reply chains with References /
In-Reply-To (some parents missing, some Message-IDs duplicated).

Then, in the same process with a warm page cache, each figure is the best of
3 runs of what a SORT / THREAD command costs after the SEARCH (ALL):
folder.records() + sort_uids / thread_uids (which read the cached headers
with folder.headers_many) + mapping to sequence numbers.  The time of
headers_many alone on all messages is printed separately.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import random
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bulkload import bulk_append, provisioned_inbox  # noqa: E402

from xmail.config import ServerSettings, Settings  # noqa: E402
from xmail.db.environment import IndexEnvironment  # noqa: E402
from xmail.protocols.imap.sort import SortCriteria, sort_uids  # noqa: E402
from xmail.protocols.imap.thread import render_thread, thread_uids  # noqa: E402

ADDRESS = "bench@example.com"
_ZONES = ["+0000", "-0800", "+0100", "+0530", "-0300", "+0900", "GMT", "EST"]
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_TOPICS = ["Quarterly report", "Lunch on Friday", "Build failure", "=?utf-8?q?Caf=C3=A9_order?=",
           "Release notes", "=?utf-8?b?5Lya6K6u57qq6KaB?=", "Budget", "Offsite plans",
           "Server migration", "Holiday schedule"]
_PREFIXES = ["", "", "", "Re: ", "RE: ", "Fwd: ", "Re: [team] ", "[list] Re: ", "Fw: Re: "]


def settings_for(data_dir: str) -> Settings:
    return dataclasses.replace(Settings(), server=ServerSettings(data_dir=data_dir))


def message(i: int, rng: random.Random) -> bytes:
    thread = i // 7  # roughly seven messages a thread
    topic = f"{_TOPICS[thread % len(_TOPICS)]} {thread}"
    prefix = _PREFIXES[rng.randrange(len(_PREFIXES))] if i % 7 else ""
    trailer = " (fwd)" if rng.random() < 0.02 else ""
    sender = rng.randrange(500)
    lines = [f"From: =?utf-8?q?S=C3=A9nder_{sender}?= <sender{sender}@example.org>",
             f"To: User {rng.randrange(50)} <user{rng.randrange(50)}@example.com>",
             f"Subject: {prefix}{topic}{trailer}"]
    if rng.random() < 0.3:
        lines.append(f"Cc: cc{rng.randrange(100)}@example.net")
    roll = rng.random()
    if roll < 0.02:
        pass  # no Date: INTERNALDATE is the sent date
    elif roll < 0.03:
        lines.append("Date: yesterday-ish")
    else:
        day = 1 + (i * 28) // 100_000 % 28
        lines.append(f"Date: {day} {_MONTHS[i % 12]} 2026 {rng.randrange(24):02d}:{rng.randrange(60):02d}:"
                     f"{rng.randrange(60):02d} {_ZONES[rng.randrange(len(_ZONES))]}")
    mid = f"<{i}@example.org>" if rng.random() > 0.005 else f"<{i - 1}@example.org>"  # a few duplicates
    lines.append(f"Message-ID: {mid}")
    if i % 7:
        first = thread * 7
        parents = list(range(first, i))
        if rng.random() < 0.1:
            parents = parents[-1:]  # truncated References
        refs = " ".join(f"<{p}@example.org>" for p in parents if rng.random() > 0.05)  # some missing
        if refs:
            lines.append(f"References: {refs}")
        lines.append(f"In-Reply-To: <{i - 1}@example.org>")
    return ("\r\n".join(lines) + "\r\n\r\nHello,\r\nsome text.\r\n").encode()


def build_folder(data_dir: str, count: int) -> None:
    from xmail.store.mailstore import MailStore

    settings = settings_for(data_dir)
    env = IndexEnvironment(settings.path("index"))
    env.open()
    store = MailStore(env, settings, None)
    inbox = provisioned_inbox(store, ADDRESS)
    rng = random.Random(5256)
    base_time = 1_772_000_000.0
    bulk_append(store, inbox, ((message(i, rng), frozenset(), base_time + i * 60 + rng.randrange(3600))
                               for i in range(count)))
    env.close()


def best_of(fn: Any, runs: int = 3) -> tuple[float, Any]:
    best, result = float("inf"), None
    for _ in range(runs):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def measure(data_dir: str) -> list[tuple[str, float, str]]:
    from xmail.store.mailstore import MailStore

    settings = settings_for(data_dir)
    env = IndexEnvironment(settings.path("index"))
    env.open()
    store = MailStore(env, settings, None)
    folder = store.mailbox(ADDRESS).folder("INBOX")
    rows: list[tuple[str, float, str]] = []

    seconds, records = best_of(folder.records)
    rows.append(("folder.records()", seconds, f"{len(records):,} records"))
    uids = [r.uid for r in records]
    seconds, got = best_of(lambda: len(folder.headers_many(uids)))
    rows.append(("folder.headers_many(all UIDs), alone", seconds, f"{got:,} header dicts"))

    def command(run: Any) -> Any:
        recs = folder.records()
        seq_of = {r.uid: n for n, r in enumerate(recs, 1)}
        result = run(recs, [r.uid for r in recs])
        return recs, seq_of, result

    for name, criteria in [("SORT (DATE)", SortCriteria.of("DATE")),
                           ("SORT (SUBJECT)", SortCriteria.of("SUBJECT")),
                           ("SORT (REVERSE ARRIVAL)", SortCriteria.of(("ARRIVAL", True))),
                           ("SORT (FROM DATE)", SortCriteria.of("FROM", "DATE")),
                           ("SORT (DISPLAYFROM)", SortCriteria.of("DISPLAYFROM"))]:
        def run(recs: Any, matched: Any, criteria: SortCriteria = criteria) -> Any:
            return sort_uids(folder, recs, criteria, search_result_uids=matched)

        seconds, (_recs, seq_of, order) = best_of(lambda run=run: command(run))
        start = time.perf_counter()
        wire = " ".join(str(seq_of[u]) for u in order)
        render = time.perf_counter() - start
        rows.append((name, seconds, f"records + headers + sort; + {render * 1000:.0f} ms to render "
                                    f"{len(wire) // 1024} KiB"))

    for algorithm in ("REFERENCES", "ORDEREDSUBJECT"):
        def run(recs: Any, matched: Any, algorithm: str = algorithm) -> Any:
            return thread_uids(folder, recs, algorithm, search_result_uids=matched)

        seconds, (_recs, seq_of, threads) = best_of(lambda run=run: command(run))
        start = time.perf_counter()
        wire = render_thread(threads, seq_of.__getitem__)
        render = time.perf_counter() - start
        rows.append((f"THREAD {algorithm}", seconds,
                     f"{len(threads):,} threads; + {render * 1000:.0f} ms to render {len(wire) // 1024} KiB"))
    env.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--dir", default=None, help="keep the folder here (reused if it exists)")
    parser.add_argument("--out", default="/work/notes/bench-sort.md")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = args.dir or tmp
        if not os.path.exists(os.path.join(data_dir, "index")):
            start = time.perf_counter()
            build_folder(data_dir, args.messages)
            print(f"built {args.messages:,} messages in {time.perf_counter() - start:.0f} s")
        rows = measure(data_dir)
    lines = [f"| figure ({args.messages:,} messages, best of 3) | time | notes |", "|---|---|---|"]
    for name, seconds, note in rows:
        lines.append(f"| {name} | {seconds * 1000:.0f} ms | {note} |")
    table = "\n".join(lines)
    print(table)
    if args.out:
        with open(args.out, "w") as f:
            f.write("# SORT / THREAD benchmark\n\n`python bench/sort_bench.py` "
                    f"(machine: {os.cpu_count()} cores, Python {sys.version.split()[0]}); "
                    "targets from issue #6: SORT (DATE) and SORT (SUBJECT) on 100k < 1 s.\n\n"
                    + table + "\n")


if __name__ == "__main__":
    main()
