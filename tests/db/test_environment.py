# -*- test-case-name: tests.db.test_environment -*-
"""The LMDB environment: group commit, job isolation, growth, cross-process use."""

from __future__ import annotations

import subprocess
import sys

import lmdb
import pytest

from tests.conftest import in_reactor, reactor_running, wait_until
from xmail.db.environment import IndexEnvironment


@pytest.fixture
def env(tmp_path):
    e = IndexEnvironment(str(tmp_path / "index"), reactor=reactor_running())
    e.open()
    e.start_writer()
    yield e
    e.close()


def test_write_fires_after_commit_and_is_visible(env):
    db = env.db("t")

    def put(txn):
        txn.put(b"k", b"v", db=db)
        return "done"

    assert in_reactor(env.write, put) == "done"
    with env.read() as txn:
        assert txn.get(b"k", db=db) == b"v"


def test_many_concurrent_writes_are_grouped(env):
    db = env.db("t")
    from twisted.internet import defer

    def job(i):
        def put(txn):
            txn.put(b"%d" % i, b"x", db=db)
            return i

        return put

    def start_all():
        return defer.gatherResults([env.write(job(i)) for i in range(500)])

    before = env.commits
    results = in_reactor(start_all)
    assert results == list(range(500))
    with env.read() as txn:
        assert txn.stat(db)["entries"] == 500
    # Queued in one reactor turn: a handful of commits, not 500 fsyncs.
    assert 1 <= env.commits - before <= 3


def test_failing_job_does_not_undo_its_neighbours(env):
    db = env.db("t")
    from twisted.internet import defer

    def good(key):
        def put(txn):
            txn.put(key, b"1", db=db)

        return put

    def bad(txn):
        txn.put(b"bad", b"1", db=db)
        raise ValueError("refused")

    def start():
        ds = [env.write(good(b"a")), env.write(bad), env.write(good(b"b"))]
        return defer.DeferredList(ds, consumeErrors=True)

    outcome = in_reactor(start)
    assert [ok for ok, _ in outcome] == [True, False, True]
    assert outcome[1][1].check(ValueError)
    with env.read() as txn:
        assert txn.get(b"a", db=db) == b"1"
        assert txn.get(b"b", db=db) == b"1"
        assert txn.get(b"bad", db=db) is None


def test_map_grows_when_full(tmp_path):
    e = IndexEnvironment(str(tmp_path / "small"), map_size=1 << 20)
    e.open()
    db = e.db("t")
    try:
        for i in range(8):
            e.write_sync(lambda txn, i=i: txn.put(b"%d" % i, b"x" * 300_000, db=db))
        with e.read() as txn:
            assert txn.stat(db)["entries"] == 8
        assert e.env.info()["map_size"] > 1 << 20
    finally:
        e.close()


def test_another_process_writes_while_open(env, tmp_path):
    """xmailctl writes from another process while the daemon has the env open."""
    db = env.db("shared")
    code = (
        "import sys; from xmail.db.environment import IndexEnvironment\n"
        "e = IndexEnvironment(sys.argv[1]); e.open(); db = e.db('shared')\n"
        "e.write_sync(lambda t: t.put(b'from', b'child', db=db)); e.close()\n"
    )
    subprocess.run([sys.executable, "-c", code, env.path], check=True, timeout=60)
    with env.read() as txn:
        assert txn.get(b"from", db=db) == b"child"


def test_closed_environment_refuses(tmp_path):
    e = IndexEnvironment(str(tmp_path / "x"))
    with pytest.raises(RuntimeError):
        e.env  # noqa: B018
    e.open()
    e.close()
    with pytest.raises((RuntimeError, lmdb.Error)):
        e.write_sync(lambda txn: None)


# -- what a commit promises (docs/decisions.md, "Durability of index writes") --------------------


def _counting_syncs(env, monkeypatch):
    calls = []
    real = env.sync

    def counted():
        calls.append(1)
        real()

    monkeypatch.setattr(env, "sync", counted)
    return calls


def test_flag_only_commit_fires_without_a_durable_sync(env, monkeypatch):
    """A flag change (durable=False) is committed -- visible -- without the
    meta page's fsync: like Dovecot's mail_fsync=optimized."""
    db = env.db("t")
    syncs = _counting_syncs(env, monkeypatch)

    def put(txn):
        txn.put(b"flags", b"S", db=db)
        return "ok"

    assert in_reactor(lambda: env.write(put, durable=False)) == "ok"
    with env.read() as txn:
        assert txn.get(b"flags", db=db) == b"S"
    assert syncs == []


def test_durable_commit_is_synced_before_it_fires(env, monkeypatch):
    db = env.db("t")
    syncs = _counting_syncs(env, monkeypatch)
    assert in_reactor(lambda: env.write(lambda txn: txn.put(b"m", b"1", db=db))) is True
    assert syncs == [1]


def test_environment_commits_without_meta_sync_and_write_sync_syncs(env, monkeypatch):
    """MDB_NOMETASYNC: one fsync per commit keeps LMDB consistent; a
    durable write adds sync() for the meta page."""
    assert env.env.flags()["metasync"] is False
    db = env.db("t")
    syncs = _counting_syncs(env, monkeypatch)
    env.write_sync(lambda txn: txn.put(b"a", b"1", db=db))
    env.write_sync(lambda txn: txn.put(b"b", b"1", db=db), durable=False)
    assert syncs == [1]


def test_flag_commit_does_not_queue_behind_a_durable_sync(env, monkeypatch):
    """While a durable batch waits for its sync, the writer commits the
    next batch: a STORE arriving behind an APPEND waits for one commit, not
    for the APPEND's sync as well.  The durable job fires only after its sync."""
    import threading

    db = env.db("t")
    entered, release = threading.Event(), threading.Event()
    real = env.sync

    def slow_sync():
        entered.set()
        assert release.wait(10)
        real()

    monkeypatch.setattr(env, "sync", slow_sync)
    fired: list[str] = []

    def start_durable():
        env.write(lambda txn: txn.put(b"message", b"1", db=db)).addCallback(lambda _: fired.append("durable"))

    reactor_running().callFromThread(start_durable)
    assert entered.wait(10)
    assert in_reactor(lambda: env.write(lambda txn: txn.put(b"flags", b"S", db=db), durable=False)) is True
    assert fired == []  # still waiting for its sync
    release.set()
    wait_until(lambda: fired == ["durable"], what="the durable write to fire after its sync")
