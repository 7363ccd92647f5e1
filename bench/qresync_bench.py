"""QRESYNC benchmark (RFC 7162): what a caching client pays to resync.

    python bench/qresync_bench.py [--sizes 10000,100000] [--changes 100] [--runs 7]

For each folder size: build a data directory with one user whose INBOX
holds that many messages (the way bench/imap_bench.py does: files written
and indexed in batches, no reactor), start a full XmailService in a child
process, and:

1. client A: ENABLE QRESYNC, SELECT INBOX, keeps UIDVALIDITY and
   HIGHESTMODSEQ, logs out;
2. client B ("elsewhere"): --changes UID STOREs of one random message each
   (+FLAGS $Bench) and --changes expunges (UID STORE \\Deleted + UID EXPUNGE,
   ten at a time), all on distinct random UIDs;
3. client A again: `SELECT INBOX (QRESYNC (uidvalidity modseq 1:N))` —
   the bytes from the server until the tagged OK and the time from sending
   to the tagged OK; the median of --runs (UNSELECT between runs; the answer
   is the same each time).  Also measured the same way, for comparison:
   the same SELECT with COMPRESS=DEFLATE active (compressed bytes), a
   plain SELECT, `UID FETCH 1:* (FLAGS) (CHANGEDSINCE m VANISHED)` after a
   plain SELECT, and the full resync a client without QRESYNC does
   (`UID FETCH 1:* (FLAGS)` plus `UID SEARCH ALL`).

Every QRESYNC answer is checked: exactly the expunged UIDs in VANISHED
(EARLIER), exactly the flag-changed UIDs in FETCH.

Targets (issue #6): < 20 kB and < 100 ms, independent of folder size.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bulkload import bulk_append, open_store, provisioned_inbox  # noqa: E402
from imap_bench import PASSWORD, free_port, message, serve, settings_for  # noqa: E402

USER = "cache@example.com"


def build(data_dir: str, count: int) -> None:
    env, directory, store = open_store(settings_for(data_dir))
    directory.add_user(USER, password=PASSWORD)
    inbox = provisioned_inbox(store, USER)
    flag_sets = [frozenset(), frozenset({"\\Seen"}), frozenset({"\\Seen", "\\Answered"})]
    yesterday = time.time() - 86400
    bulk_append(store, inbox, ((message(i, USER), flag_sets[i % len(flag_sets)], yesterday)
                               for i in range(count)))
    env.close()


class Client:
    """Blocking client that counts the bytes it receives (after COMPRESS:
    the compressed bytes on the wire)."""

    def __init__(self, port: int):
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.n = 0
        self.received = 0
        self.inflater = None
        self.deflater = None
        self._line()

    def _fill(self) -> None:
        chunk = self.sock.recv(1 << 20)
        if not chunk:
            raise ConnectionError("closed")
        self.received += len(chunk)
        self.buf += self.inflater.decompress(chunk) if self.inflater else chunk

    def _line(self) -> bytes:
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line, self.buf = self.buf[:i], self.buf[i + 2 :]
                return line
            self._fill()

    def command(self, text: str) -> tuple[float, int, list[bytes]]:
        """(seconds to the tagged OK, bytes received, untagged lines)."""
        self.n += 1
        tag = b"q%d" % self.n
        data = tag + b" " + text.encode() + b"\r\n"
        if self.deflater:
            data = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        # Commands run one at a time and nothing follows a tagged OK, so
        # the bytes read meanwhile are this command's (compressed or not).
        before = self.received
        started = time.perf_counter()
        self.sock.sendall(data)
        lines = []
        while True:
            line = self._line()
            if line.startswith(tag + b" "):
                elapsed = time.perf_counter() - started
                assert line[len(tag) + 1 :].startswith(b"OK"), line
                return elapsed, self.received - before, lines
            lines.append(line)

    def compress(self) -> None:
        self.command("COMPRESS DEFLATE")
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflater = zlib.decompressobj(-15)

    def close(self) -> None:
        self.sock.close()


def login(port: int) -> Client:
    c = Client(port)
    c.command(f'LOGIN {USER} "{PASSWORD}"')
    return c


def _uids(text: bytes) -> set[int]:
    out: set[int] = set()
    for part in text.split(b","):
        low, _, high = part.partition(b":")
        out.update(range(int(low), int(high or low) + 1))
    return out


def median_of(runs: int, fn) -> tuple[float, int, list[bytes]]:  # type: ignore[no-untyped-def]
    # Bytes of the first run: with COMPRESS, a repeat of the same answer
    # compresses to back-references into the previous one.
    results = [fn() for _ in range(runs)]
    ms = statistics.median(r[0] for r in results) * 1000
    return ms, results[0][1], results[0][2]


def bench_size(count: int, changes: int, runs: int) -> dict:
    data_dir = tempfile.mkdtemp(prefix=f"qresync-bench-{count}-")
    try:
        started = time.perf_counter()
        build(data_dir, count)
        print(f"built {count} messages in {time.perf_counter() - started:.1f} s", flush=True)
        port = free_port()
        proc = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--serve", data_dir,
                                 json.dumps({"imap": port})], stdout=subprocess.PIPE, text=True)
        try:
            assert proc.stdout is not None
            while proc.stdout.readline().strip() != "READY":
                pass
            return _measure(port, count, changes, runs)
        finally:
            proc.terminate()
            proc.wait(10)
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


def _measure(port: int, count: int, changes: int, runs: int) -> dict:
    a = login(port)
    a.command("ENABLE QRESYNC")
    _, _, lines = a.command("SELECT INBOX")
    joined = b"\n".join(lines)
    uidvalidity = int(re.search(rb"UIDVALIDITY (\d+)", joined).group(1))
    modseq = int(re.search(rb"HIGHESTMODSEQ (\d+)", joined).group(1))
    a.close()

    rng = random.Random(7)
    picked = rng.sample(range(1, count + 1), 2 * changes)
    flagged, expunged = sorted(picked[:changes]), sorted(picked[changes:])
    b = login(port)
    b.command("SELECT INBOX")
    for uid in flagged:
        b.command(f"UID STORE {uid} +FLAGS.SILENT ($Bench)")
    for i in range(0, len(expunged), 10):
        group = ",".join(map(str, expunged[i : i + 10]))
        b.command(f"UID STORE {group} +FLAGS.SILENT (\\Deleted)")
        b.command(f"UID EXPUNGE {group}")
    b.close()

    out: dict = {}
    qresync = f"SELECT INBOX (QRESYNC ({uidvalidity} {modseq} 1:{count}))"

    def check(lines: list[bytes]) -> None:
        [vanished] = [ln for ln in lines if ln.startswith(b"* VANISHED (EARLIER) ")]
        assert _uids(vanished.split()[-1]) == set(expunged), "VANISHED is not exact"
        matches = (re.match(rb"\* \d+ FETCH \(UID (\d+) ", ln) for ln in lines)
        fetched = {int(m.group(1)) for m in matches if m}
        assert fetched == set(flagged), "FETCH set is not exact"

    for label, compress in (("QRESYNC SELECT", False), ("QRESYNC SELECT, COMPRESS", True)):
        c = login(port)
        c.command("ENABLE QRESYNC")
        if compress:
            c.compress()

        def once(c=c) -> tuple[float, int, list[bytes]]:  # type: ignore[no-untyped-def]
            result = c.command(qresync)
            c.command("UNSELECT")
            return result

        ms, size, lines = median_of(runs, once)
        check(lines)
        out[label] = (ms, size)
        c.close()

    c = login(port)
    c.command("ENABLE QRESYNC")

    def plain() -> tuple[float, int, list[bytes]]:
        result = c.command("SELECT INBOX")
        c.command("UNSELECT")
        return result

    out["plain SELECT"] = median_of(runs, plain)[:2]
    c.command("SELECT INBOX")
    changes_since = f"UID FETCH 1:* (FLAGS) (CHANGEDSINCE {modseq} VANISHED)"
    ms, size, lines = median_of(runs, lambda: c.command(changes_since))
    check(lines)
    out["UID FETCH CHANGEDSINCE VANISHED"] = (ms, size)
    fetch_ms, fetch_size, _ = c.command("UID FETCH 1:* (FLAGS)")
    search_ms, search_size, _ = c.command("UID SEARCH ALL")
    out["full resync without QRESYNC"] = ((fetch_ms + search_ms) * 1000, fetch_size + search_size)
    c.close()
    for label, (ms, size) in out.items():
        print(f"  {label:34s} {ms:8.1f} ms {size:10,d} bytes", flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--serve", nargs=2, metavar=("DIR", "PORTS_JSON"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve[0], json.loads(args.serve[1]))
        return
    results = {}
    for size in (int(s) for s in args.sizes.split(",")):
        print(f"{size}-message folder, {args.changes} flag changes + {args.changes} expunges elsewhere:",
              flush=True)
        results[size] = bench_size(size, args.changes, args.runs)
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
