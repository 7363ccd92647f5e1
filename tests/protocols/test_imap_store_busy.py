# -*- test-case-name: tests.protocols.test_imap_store_busy -*-
"""Issue 16, item 7: a busy store answers once, not with a traceback per
folder.  LIST-STATUS over many folders opens each of them; with the store's
file queue full (xmail.store.runner.MAX_PENDING_FILE_JOBS) every first open
used to log a `StoreBusy` traceback for its drop-in pickup."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from twisted.internet import defer
from twisted.logger import globalLogPublisher

from tests.protocols.imap_support import Wire, message
from tests.support.wait import wait_until
from xmail.store import runner as store_runner
from xmail.store.folder import MaildirFolder
from xmail.store.interfaces import StoreBusy

FOLDERS = 40


@pytest.fixture
def events() -> Iterator[list[dict[str, Any]]]:
    seen: list[dict[str, Any]] = []
    globalLogPublisher.addObserver(seen.append)
    yield seen
    globalLogPublisher.removeObserver(seen.append)


def failures(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [e for e in events if "log_failure" in e]


def wait_idle(server: Any) -> None:
    """Until the store's file queue is empty: a job still in flight (the
    new/ pickup a folder's first open starts) would free its slot later."""
    runner = server.ctx.store.runner
    wait_until(lambda: server.call(lambda: runner.pending) == 0, what="the store's file queue to be idle")


def fill_file_queue(server: Any) -> tuple[threading.Event, list[defer.Deferred[Any]]]:
    """Occupy every slot of the store's file queue with real jobs that wait
    for `release`: what thousands of slow fsyncs look like to the store.

    Jobs are added until one is refused (at once, so the queue is full at
    that moment); they wait for `release` only, never a timer, so no slot
    frees itself while the test runs.  Called with the queue idle."""
    release = threading.Event()
    runner = server.ctx.store.runner

    def fill() -> tuple[list[defer.Deferred[Any]], list[Any]]:
        jobs: list[defer.Deferred[Any]] = []
        refused: list[Any] = []
        for _ in range(store_runner.MAX_PENDING_FILE_JOBS + 1):
            d = runner.io(release.wait)
            d.addErrback(lambda f: refused.append(f.value))  # a refusal fires at once
            if refused:
                break
            jobs.append(d)
        return jobs, refused

    try:
        jobs, refused = server.call(fill)
        assert len(refused) == 1 and isinstance(refused[0], StoreBusy), refused
    except BaseException:
        release.set()
        raise
    return release, jobs


def drop_in(server: Any, address: str, name: str, data: bytes) -> None:
    """Another program (procmail, a migration) puts a file into new/."""
    store = server.ctx.store
    folder = server.call(server.mailbox(address).folder, name)
    wait_idle(server)  # the open's own pickup has looked at new/ already
    with store.env.read() as txn:
        state = store.index.state(txn, folder.fid)
    path = os.path.join(store.folder_dir(state), "new", "1700000000.drop.host")
    with open(path, "wb") as f:
        f.write(data)


def test_list_status_with_the_file_queue_full(server: Any, events: list[dict[str, Any]]) -> None:
    with Wire(server.port("imap")) as wire:
        wire.login()
        for n in range(FOLDERS):
            wire.ok(f"CREATE F{n}")
    # A fresh process (a restarted worker) has opened none of them yet.
    server.ctx.store.notifier._new_mtimes.clear()
    drop_in(server, "alice@example.com", "F7", message("dropped"))
    server.ctx.store.notifier._new_mtimes.clear()
    wait_idle(server)
    release, jobs = fill_file_queue(server)
    try:
        with Wire(server.port("imap")) as wire:
            wire.login()
            lines = wire.ok('LIST "" "F*" RETURN (STATUS (MESSAGES))')
            statuses = [line for line in lines if line.startswith(b"* STATUS ")]
            assert len(statuses) == FOLDERS
            assert b"* STATUS F7 (MESSAGES 0)" in statuses  # its pickup is postponed
            assert wire.ok("NOOP") == []
    finally:
        release.set()
        server.call(lambda: defer.DeferredList(jobs))
    # No traceback per folder: one warning for the whole busy spell.
    assert failures(events) == []
    busy = [e for e in events if "drop-in pickups postponed" in str(e.get("log_format"))]
    assert len(busy) == 1, busy
    # The postponed pickup is retried at the next open (it runs in the
    # background, so the count shows it a moment later), not forgotten.
    with Wire(server.port("imap")) as wire:
        wire.login()
        wait_until(lambda: wire.ok("STATUS F7 (MESSAGES)") == [b"* STATUS F7 (MESSAGES 1)"],
                   what="the dropped-in message to be picked up")


def test_status_raising_store_busy_answers_one_no(server: Any, events: list[dict[str, Any]],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    with Wire(server.port("imap")) as wire:
        wire.login()
        for n in range(FOLDERS):
            wire.ok(f"CREATE F{n}")
        asked: list[str] = []
        real_status = MaildirFolder.status

        def busy_status(folder: MaildirFolder) -> Any:
            asked.append(folder.name)
            if folder.name.startswith("F"):
                raise StoreBusy("index writer queue is full")
            return real_status(folder)

        monkeypatch.setattr(MaildirFolder, "status", busy_status)
        status, lines = wire.expect("NO", 'LIST "" "*" RETURN (STATUS (MESSAGES))')
        assert b"[UNAVAILABLE]" in status, status
        # The command stops at the first busy folder: one NO, no STATUS for the rest.
        assert [name for name in asked if name.startswith("F")] == ["F0"]
        assert not any(line.startswith(b"* STATUS F") for line in lines)
        status, _ = wire.expect("NO", "STATUS F3 (MESSAGES)")
        assert b"[UNAVAILABLE]" in status, status
        monkeypatch.setattr(MaildirFolder, "status", real_status)
        assert wire.ok("STATUS F3 (MESSAGES)") == [b"* STATUS F3 (MESSAGES 0)"]
    assert failures(events) == []
