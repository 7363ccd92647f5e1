"""Store benchmark: durable appends per second, and opening a big folder.

    python bench/store_bench.py [--dir DIR] [--seconds 5] [--messages 100000]

1. Durable appends of 10 kB messages into one folder through the daemon's
   code path (MailStore with a reactor: file thread pool + group-commit
   index writer), with 1 and with 8 concurrent appenders.  Every append is
   counted only when its Deferred fired: file fsynced, cur/ fsynced, index
   committed.
2. A folder of N messages (100,000 by default) built directly (files
   without fsync, index in large transactions), then in a fresh process:
   open the environment, the store, the mailbox and the folder and list
   every UID and its flags.  Reports the time and the peak RSS of that
   process.  cur/ is never listed.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bulkload import bulk_append, provisioned_inbox  # noqa: E402

from xmail.config import ServerSettings, Settings  # noqa: E402
from xmail.db.environment import IndexEnvironment  # noqa: E402

ADDRESS = "bench@example.com"


def settings_for(data_dir: str) -> Settings:
    return dataclasses.replace(Settings(), server=ServerSettings(data_dir=data_dir))


def message(i: int, size: int = 10_000) -> bytes:
    head = (f"From: a@example.org\r\nTo: {ADDRESS}\r\nSubject: message {i}\r\n"
            f"Message-ID: <{i}.{time.time()}@example.org>\r\n\r\n").encode()
    line = b"x" * 76 + b"\r\n"
    body = line * ((size - len(head)) // len(line))
    return head + body


def bench_appends(data_dir: str, appenders: int, seconds: float) -> dict:
    """Run in a child process: a reactor can run only once per process."""
    from twisted.internet import defer, reactor

    from xmail.store.mailstore import MailStore

    settings = settings_for(data_dir)
    env = IndexEnvironment(settings.path("index"), reactor=reactor)
    env.open()
    env.start_writer()
    store = MailStore(env, settings, None, reactor)
    store.start()
    payloads = [message(i) for i in range(64)]
    done = {"count": 0, "latency": []}
    outcome: dict = {}

    @defer.inlineCallbacks
    def appender(folder, deadline: float):
        i = 0
        while time.monotonic() < deadline:
            started = time.monotonic()
            yield folder.append(payloads[i % len(payloads)])
            done["latency"].append(time.monotonic() - started)
            done["count"] += 1
            i += 1

    @defer.inlineCallbacks
    def run():
        try:
            mailbox = yield store.provision(ADDRESS)
            folder = mailbox.folder("INBOX")
            yield folder.append(payloads[0])  # warm up: threads, index handles
            done["count"] = 0
            done["latency"].clear()
            start = time.monotonic()
            deadline = start + seconds
            yield defer.gatherResults([appender(folder, deadline) for _ in range(appenders)])
            elapsed = time.monotonic() - start
            latency = sorted(done["latency"])
            outcome.update(appenders=appenders, messages=done["count"], seconds=round(elapsed, 2),
                           per_second=round(done["count"] / elapsed),
                           p50_ms=round(latency[len(latency) // 2] * 1000, 1),
                           p99_ms=round(latency[int(len(latency) * 0.99)] * 1000, 1),
                           folder_messages=folder.status().messages)
        finally:
            store.stop()
            reactor.stop()

    reactor.callWhenRunning(run)
    reactor.run()
    env.close()
    return outcome


def build_big_folder(data_dir: str, count: int) -> None:
    """count messages of ~2 kB in INBOX, quickly: no fsync, big transactions."""
    from xmail.store.delivery import parse_meta
    from xmail.store.mailstore import MailStore

    settings = settings_for(data_dir)
    env = IndexEnvironment(settings.path("index"))
    env.open()
    store = MailStore(env, settings, None)
    inbox = provisioned_inbox(store, ADDRESS)
    data = message(0, 2000)
    meta = parse_meta(data)
    flag_sets = [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Seen", "\\Answered"}),
                 frozenset({"\\Seen", "\\Flagged"})]
    now = time.time()
    bulk_append(store, inbox, ((data, flag_sets[i % len(flag_sets)], now) for i in range(count)),
                meta_of=lambda _data: meta)
    env.close()


def open_and_list(data_dir: str) -> dict:
    """Run in a fresh child process: the cold open a new IMAP session pays."""
    from xmail.store.mailstore import MailStore

    settings = settings_for(data_dir)
    started = time.perf_counter()
    env = IndexEnvironment(settings.path("index"))
    env.open()
    store = MailStore(env, settings, None)
    folder = store.mailbox(ADDRESS).folder("INBOX")
    records = folder.records()
    # What a session derives from the list: the UID map and the \Seen count.
    uids = [r.uid for r in records]
    unseen = sum(1 for r in records if "\\Seen" not in r.flags)
    elapsed = time.perf_counter() - started
    again = time.perf_counter()
    folder.records()
    second = time.perf_counter() - again
    opened = time.perf_counter()
    for uid in uids[:10_000]:
        folder.open_message(uid).close()
    per_open = (time.perf_counter() - opened) / min(len(uids), 10_000)
    status = folder.status()
    env.close()
    assert status.unseen == unseen
    return {"messages": len(uids), "open_and_list_ms": round(elapsed * 1000, 1),
            "second_list_ms": round(second * 1000, 1), "open_message_us": round(per_open * 1e6, 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def raw_fsync_pairs(directory: str, seconds: float = 2.0) -> float:
    """What the disk does right now: write+fsync a 10 kB file, fsync its
    directory, one thread.  The append figures are only meaningful next to it."""
    count = 0
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        fd = os.open(os.path.join(directory, f"raw{count}"), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x" * 10_000)
        os.fsync(fd)
        os.close(fd)
        dir_fd = os.open(directory, os.O_RDONLY)
        os.fsync(dir_fd)
        os.close(dir_fd)
        count += 1
    return count / seconds


def child(args: list[str]) -> dict:
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", *args], capture_output=True,
                          text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"child {args} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dir", help="scratch directory (default: a temporary one)")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--messages", type=int, default=100_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        kind, data_dir, *rest = args.child
        if kind == "append":
            result = bench_appends(data_dir, int(rest[0]), float(rest[1]))
        elif kind == "build":
            build_big_folder(data_dir, int(rest[0]))
            result = {}
        else:
            result = open_and_list(data_dir)
        print(json.dumps(result))
        return
    scratch = tempfile.mkdtemp(prefix="xmail-bench-", dir=args.dir)
    try:
        print(f"scratch directory: {scratch}, load average {os.getloadavg()[0]:.1f}")
        raw_dir = os.path.join(scratch, "raw")
        os.mkdir(raw_dir)
        print(f"disk: {raw_fsync_pairs(raw_dir):.0f} file+directory fsync pairs/s (one thread, 10 kB)")
        for appenders in (1, 8):
            data_dir = os.path.join(scratch, f"append{appenders}")
            r = child(["append", data_dir, str(appenders), str(args.seconds)])
            print(f"durable appends, 10 kB, {appenders} appender(s): {r['per_second']}/s "
                  f"({r['messages']} in {r['seconds']} s, latency p50 {r['p50_ms']} ms, "
                  f"p99 {r['p99_ms']} ms)")
        data_dir = os.path.join(scratch, "big")
        started = time.monotonic()
        child(["build", data_dir, str(args.messages)])
        print(f"built a {args.messages}-message folder in {time.monotonic() - started:.1f} s")
        r = child(["list", data_dir])
        print(f"open + list all UIDs and flags of {r['messages']} messages: {r['open_and_list_ms']} ms "
              f"(again in the same process: {r['second_list_ms']} ms), peak RSS {r['peak_rss_mb']} MB")
        print(f"open_message (index lookup + open + close), 10,000 messages: {r['open_message_us']} µs each")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


if __name__ == "__main__":
    main()
