"""SEARCH evaluation speed (xmail.protocols.imap.search.run_search).

    python bench/search_bench.py [messages-in-memory] [messages-in-store]

1. The evaluator alone on an in-memory folder of 100,000 records whose
   cached metas come from parse_message (targets from issue #5:
   UID SEARCH UNSEEN < 200 ms, SEARCH SUBJECT x < 2 s).
2. The same searches on a real MailStore (sync mode, temporary directory)
   with fewer messages, to show what reading headers / metas from LMDB
   costs per message; the 100k figure is extrapolated and printed as such.
   When the store has no `metas_many` bulk accessor yet, BODY is measured
   again with a prototype of one (store internals, benchmark only).
"""

from __future__ import annotations

import dataclasses
import marshal
import os
import sys
import tempfile
import time
from typing import Any

from xmail.message import parse_message
from xmail.protocols.imap.model import SearchAnd, SearchKey, SearchNot, SearchOr
from xmail.protocols.imap.search import run_search
from xmail.store.interfaces import MessageRecord


def message(i: int) -> bytes:
    return (
        f"From: Sender {i % 97} <sender{i % 97}@example.org>\r\n"
        f"To: user@example.com\r\n"
        f"Subject: Weekly report number {i}\r\n"
        f"Date: Tue, 3 Nov 2026 10:{i % 60:02d}:00 +0100\r\n"
        f"Message-ID: <{i}@example.org>\r\n"
        f"\r\n" + "Some text of the body, line after line.\r\n" * 40
    ).encode()


class MemoryFolder:
    def __init__(self, count: int):
        metas = [parse_message(message(i)) for i in range(200)]  # shared: memory stays small
        self.metas = {uid: metas[uid % 200] for uid in range(1, count + 1)}
        self.recs = [MessageRecord(uid, frozenset({"\\Seen"}) if uid % 10 else frozenset(), uid, 4000,
                                   1.7e9 + uid, str(uid)) for uid in range(1, count + 1)]

    def records(self, uids: Any = None) -> list[MessageRecord]:
        return self.recs

    def meta(self, uid: int) -> Any:
        return self.metas[uid]


SEARCHES = {
    "UID SEARCH UNSEEN": SearchAnd((SearchKey("UNSEEN"),)),
    "SEARCH SUBJECT x": SearchAnd((SearchKey("SUBJECT", ("x",)),)),
    "SEARCH SUBJECT \"number 77\"": SearchAnd((SearchKey("SUBJECT", ("number 77",)),)),
    "SEARCH OR FROM sender5 NOT SEEN": SearchAnd((SearchOr(SearchKey("FROM", ("sender5",)),
                                                           SearchNot(SearchKey("SEEN"))),)),
    "SEARCH BODY \"line after\"": SearchAnd((SearchKey("BODY", ("line after",)),)),
}


def timed(expr: Any, folder: Any, records: list[MessageRecord]) -> tuple[float, int]:
    best = float("inf")
    found = 0
    for _ in range(3):
        start = time.perf_counter()
        found = len(run_search(expr, folder, records, recent_uids=set()))
        best = min(best, time.perf_counter() - start)
    return best, found


def in_memory(count: int) -> None:
    folder = MemoryFolder(count)
    print(f"evaluator on {count:,} in-memory records (best of 3):")
    for name, expr in SEARCHES.items():
        seconds, found = timed(expr, folder, folder.records())
        print(f"  {name:36s} {seconds * 1000:9.1f} ms  ({found:,} matches)")


def in_store(count: int) -> None:
    from xmail.config import Settings
    from xmail.db.environment import IndexEnvironment
    from xmail.store.mailstore import MailStore

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings()
        settings = dataclasses.replace(settings, server=dataclasses.replace(settings.server, data_dir=tmp))
        env = IndexEnvironment(os.path.join(tmp, "index"))
        env.open()
        store = MailStore(env, settings, None, reactor=None)
        start = time.perf_counter()
        for i in range(count):
            store.deliver("user@example.com", message(i), flags=("\\Seen",) if i % 10 else ())
        print(f"real MailStore, {count:,} messages (delivered in {time.perf_counter() - start:.1f} s):")
        folder = store.mailbox("user@example.com").folder("INBOX")
        start = time.perf_counter()
        records = folder.records()
        print(f"  folder.records()                     {(time.perf_counter() - start) * 1000:9.1f} ms")
        for name, expr in SEARCHES.items():
            seconds, found = timed(expr, folder, records)
            print(f"  {name:36s} {seconds * 1000:9.1f} ms  ({found:,} matches)"
                  f"  -> 100k: ~{seconds * 100_000 / count:.2f} s")
        if not hasattr(folder, "metas_many"):
            print("  with a prototype folder.metas_many (one read txn per batch):")
            folder.metas_many = lambda uids: _prototype_metas_many(folder, uids)
            name = 'SEARCH BODY "line after"'
            seconds, found = timed(SEARCHES[name], folder, records)
            print(f"  {name:36s} {seconds * 1000:9.1f} ms  ({found:,} matches)"
                  f"  -> 100k: ~{seconds * 100_000 / count:.2f} s")
        raw = marshal.dumps(parse_message(message(1)).headers)
        start = time.perf_counter()
        for _ in range(100_000):
            marshal.loads(raw)
        elapsed = time.perf_counter() - start
        print(f"  marshal.loads of a headers dict alone x 100k:  {elapsed * 1000:.0f} ms")
        env.close()


def _prototype_metas_many(folder: Any, uids: list[int]) -> Any:
    """What the store could offer: every meta of a batch in one read
    transaction (uses store internals; for this benchmark only)."""
    from xmail.store.index import decode_meta

    index = folder.store.index
    with folder.store.env.read() as txn:
        return [(t[0], decode_meta(index.meta(txn, folder.fid, t[0])))
                for t in index.get_many(txn, folder.fid, uids)]


def main() -> None:
    memory_count = int(sys.argv[1]) if len(sys.argv) > 1 else 100_000
    store_count = int(sys.argv[2]) if len(sys.argv) > 2 else 2_000
    in_memory(memory_count)
    if store_count:
        in_store(store_count)


if __name__ == "__main__":
    main()
