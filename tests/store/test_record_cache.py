# -*- test-case-name: tests.store.test_record_cache -*-
"""The index's MessageRecord cache is a bounded LRU per process (issue 15,
memory): listing big folders must not leave a worker holding ~115 MB."""

from __future__ import annotations

import gc
import tracemalloc

import pytest

from tests.store.conftest import SyncStore, result_of
from xmail.store import index

MESSAGE = b"Message-ID: <m@example.org>\r\nSubject: s\r\n\r\nbody\r\n"
BUDGET = 20 * 1024 * 1024  # bytes a worker may keep in cached records


def cap() -> int:
    return getattr(index, "CACHE_RECORDS", getattr(index, "_CACHE_RECORDS", 0))


def fill(sync: SyncStore, count: int) -> object:
    inbox = sync.mailbox().folder("INBOX")
    for n in range(count):
        result_of(inbox.append(MESSAGE, ("\\Seen",) if n % 3 else ()))
    return inbox


def test_cache_holds_at_most_its_cap_and_listings_stay_right(sync: SyncStore,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    inbox = fill(sync, 700)  # six index chunks of 128
    uids = [r.uid for r in inbox.records()]
    monkeypatch.setattr(index, "CACHE_RECORDS", 256, raising=False)
    monkeypatch.setattr(index, "_CACHE_RECORDS", 256, raising=False)
    cache = sync.store.index
    cache._chunk_cache.clear()
    cache._cached_records = 0
    assert [r.uid for r in inbox.records()] == uids
    assert 0 < cache._cached_records <= 256
    # Least recently used first out: the last chunks listed are the ones kept.
    kept = list(cache._chunk_cache)
    assert kept == sorted(kept) and kept[-1] == index.chunk_key(inbox.fid, uids[-1])
    # A record from an evicted chunk is rebuilt, and it is right.
    assert inbox.record(uids[0]).uid == uids[0]
    assert cache._cached_records <= 256
    assert [r.uid for r in inbox.records()] == uids


def test_cache_fits_a_worker_memory_budget(sync: SyncStore) -> None:
    """cap x the measured bytes of one cached record (with its chunk's raw
    value) stays within BUDGET; the old cap of 200,000 records was ~115 MB."""
    inbox = fill(sync, 1024)  # eight full chunks
    cache = sync.store.index
    cache._chunk_cache.clear()
    cache._cached_records = 0
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        listed = inbox.records()
        del listed  # what stays is the cache's share
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cache._cached_records == 1024
    per_record = held / 1024
    assert 100 < per_record < 2000, per_record  # the measurement measured something
    assert cap() * per_record <= BUDGET, (cap(), per_record)
