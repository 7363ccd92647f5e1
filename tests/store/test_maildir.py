# -*- test-case-name: tests.store.test_maildir -*-
"""The Maildir file layer: flags <-> letters, CRLF, shared directory fsyncs."""

from __future__ import annotations

import os
import threading

from hypothesis import given
from hypothesis import strategies as st

from tests.support.wait import wait_until
from xmail.store import maildir


def test_flags_to_letters_and_back() -> None:
    keywords = ["$Junk", "work"]
    flags = frozenset({"\\Seen", "\\Answered", "\\Flagged", "\\Draft", "\\Deleted", "$Forwarded", "work"})
    letters = maildir.info_letters(flags, keywords)
    assert letters == "DFPRSTb"  # ASCII order, as the Maildir spec asks
    assert maildir.flags_from_letters(letters, keywords) == flags
    assert maildir.info_letters(frozenset({"unlettered"}), keywords) == ""


def test_split_info() -> None:
    assert maildir.split_info("123.abc.host,S=5:2,RS") == ("123.abc.host,S=5", "RS")
    assert maildir.split_info("123.abc.host") == ("123.abc.host", "")
    assert maildir.split_info("123.abc.host:1,experimental") == ("123.abc.host", "")


@given(st.binary(max_size=200))
def test_to_crlf_leaves_no_bare_lf_and_is_idempotent(data: bytes) -> None:
    fixed = maildir.to_crlf(data)
    assert not maildir.has_bare_lf(fixed)
    assert maildir.to_crlf(fixed) == fixed
    assert fixed.replace(b"\r\n", b"\n") == data.replace(b"\r\n", b"\n")


def test_deliver_file_is_durable_shape(tmp_path) -> None:
    folder = str(tmp_path)
    maildir.make_folder_dirs(folder, subfolder=True)
    base = maildir.deliver_file(folder, b"x\r\n", "S", maildir.DirSyncer())
    assert os.listdir(os.path.join(folder, "cur")) == [base + ":2,S"]
    assert os.listdir(os.path.join(folder, "tmp")) == []
    assert os.path.exists(os.path.join(folder, "maildirfolder"))


def test_dir_syncer_shares_fsyncs(tmp_path, monkeypatch) -> None:
    calls = []
    started = threading.Event()
    release = threading.Event()

    def slow_fsync(path: str) -> None:
        calls.append(path)
        if len(calls) == 1:
            started.set()
            release.wait(5)

    monkeypatch.setattr(maildir, "fsync_dir", slow_fsync)
    syncer = maildir.DirSyncer()
    first = threading.Thread(target=syncer.sync, args=(str(tmp_path),))
    first.start()
    started.wait(5)
    # Eight writers arrive while the first fsync runs: they need one more, not eight.
    waiters = [threading.Thread(target=syncer.sync, args=(str(tmp_path),)) for _ in range(8)]
    for t in waiters:
        t.start()
    wait_until(lambda: syncer.waiting(str(tmp_path)) == 8, what="eight writers waiting")
    release.set()
    for t in [first, *waiters]:
        t.join(5)
    assert len(calls) == 2


def test_a_failed_directory_fsync_is_never_taken_for_a_success(tmp_path, monkeypatch) -> None:
    """Callers waiting for a shared directory fsync that fails must not return
    as if their link were durable: they sync again (and fail if it fails)."""
    import threading
    import time

    syncer = maildir.DirSyncer()
    real = maildir.fsync_dir
    calls: list[str] = []
    gate = threading.Event()

    def flaky(path: str) -> None:
        calls.append(path)
        if len(calls) == 1:
            gate.wait(5)  # B and C arrive while this one runs: both want the next
        if len(calls) == 2:
            raise OSError(5, "Input/output error")
        real(path)

    monkeypatch.setattr(maildir, "fsync_dir", flaky)
    outcomes: list[object] = []

    def caller() -> None:
        try:
            syncer.sync(str(tmp_path))
            outcomes.append("ok")
        except OSError as e:
            outcomes.append(e.errno)

    threads = [threading.Thread(target=caller) for _ in range(3)]
    threads[0].start()
    while not calls:
        time.sleep(0.001)
    threads[1].start()
    threads[2].start()
    # Both wait for the generation after the running one.
    wait_until(lambda: syncer.waiting(str(tmp_path)) == 2, what="two callers waiting")
    gate.set()
    for t in threads:
        t.join(5)
    # The second sync failed: its runner sees the error, and the caller that
    # waited for that same generation ran a sync of its own.
    assert sorted(map(str, outcomes)) == ["5", "ok", "ok"] and len(calls) == 3


def test_finish_files_batches_one_directory_fsync_per_folder(tmp_path, monkeypatch) -> None:
    folders = [str(tmp_path / name) for name in ("a", "b")]
    for folder in folders:
        maildir.make_folder_dirs(folder, subfolder=True)
    started = [maildir.start_file(folders[i % 2], b"message %d\r\n" % i, "S") for i in range(6)]
    # Nothing is visible before the batch is finished.
    assert all(os.listdir(os.path.join(folder, "cur")) == [] for folder in folders)
    synced = []
    real = maildir.fsync_dir
    monkeypatch.setattr(maildir, "fsync_dir", lambda path: (synced.append(path), real(path)))
    errors = maildir.finish_files([pending for _base, pending in started], maildir.DirSyncer())
    assert errors == [None] * 6
    assert sorted(synced) == sorted(os.path.join(folder, "cur") for folder in folders)
    for i, (base, _pending) in enumerate(started):
        with open(os.path.join(folders[i % 2], "cur", base + ":2,S"), "rb") as f:
            assert f.read() == b"message %d\r\n" % i
    assert all(os.listdir(os.path.join(folder, "tmp")) == [] for folder in folders)


def test_finish_files_fails_only_the_file_that_failed(tmp_path) -> None:
    good, bad = str(tmp_path / "good"), str(tmp_path / "bad")
    for folder in (good, bad):
        maildir.make_folder_dirs(folder, subfolder=True)
    first = maildir.start_file(good, b"one\r\n", "")
    broken = maildir.start_file(bad, b"two\r\n", "")
    last = maildir.start_file(good, b"three\r\n", "")
    os.rmdir(os.path.join(bad, "cur"))  # the link into cur/ fails
    errors = maildir.finish_files([first[1], broken[1], last[1]], maildir.DirSyncer())
    assert errors[0] is None and errors[2] is None
    assert isinstance(errors[1], FileNotFoundError)
    assert sorted(os.listdir(os.path.join(good, "cur"))) == sorted([first[0] + ":2,", last[0] + ":2,"])
    # The failed message leaves nothing behind, in tmp/ or elsewhere.
    assert os.listdir(os.path.join(bad, "tmp")) == []


def test_finish_files_fsyncs_a_batch_concurrently(tmp_path, monkeypatch):
    """The files of one append batch are fsynced together, not one after
    the other: 8 files whose fsync each takes 0.2 s finish in well under
    8 x 0.2 s (the disk completes concurrent flushes together)."""
    import time as _time

    from xmail.store import maildir

    folder = tmp_path / "f"
    for sub in ("tmp", "new", "cur"):
        (folder / sub).mkdir(parents=True)
    real_fsync = os.fsync
    in_flight = [0]
    most = [0]

    def slow_fsync(fd):
        in_flight[0] += 1
        most[0] = max(most[0], in_flight[0])
        _time.sleep(0.2)
        in_flight[0] -= 1
        return real_fsync(fd)

    files = [maildir.start_file(str(folder), b"Subject: %d\r\n\r\nbody\r\n" % i, "")[1] for i in range(8)]
    monkeypatch.setattr(os, "fsync", slow_fsync)
    errors = maildir.finish_files(files, maildir.DirSyncer())
    assert errors == [None] * 8
    assert len(os.listdir(folder / "cur")) == 8
    assert most[0] > 1
