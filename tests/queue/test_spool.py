# -*- test-case-name: tests.queue.test_spool -*-
"""The spool on a real LMDB environment and a real directory."""

from __future__ import annotations

import os

import pytest

from xmail.db.environment import IndexEnvironment
from xmail.queue.spool import (
    FAILED,
    QUEUED,
    CrlfNormalizer,
    QueuedMessage,
    RecipientState,
    Spool,
    new_id,
    valid_id,
)


@pytest.fixture
def spool(tmp_path):
    env = IndexEnvironment(str(tmp_path / "index"))
    env.open()
    qdir = tmp_path / "queue"
    qdir.mkdir()
    yield Spool(env, str(qdir))
    env.close()


def message(queue_id: str, *times: float) -> QueuedMessage:
    recipients = [RecipientState(f"r{i}@x.test", next_attempt=t) for i, t in enumerate(times)]
    return QueuedMessage(id=queue_id, mail_from="a@example.com", created=0.0, size=1, recipients=recipients)


@pytest.mark.parametrize("chunk", [1, 2, 3, 1 << 16])
def test_crlf_normalizer(chunk):
    data = b"a\nb\r\nc\r\r\nd\n\ne"
    n = CrlfNormalizer()
    out = b"".join(n.feed(data[i : i + chunk]) for i in range(0, len(data), chunk))
    assert out == b"a\r\nb\r\nc\r\r\nd\r\n\r\ne"


def test_write_message_is_crlf_and_durable(spool, tmp_path):
    queue_id = new_id()
    assert valid_id(queue_id)
    src = tmp_path / "src"
    src.write_bytes(b"Subject: x\n\nbody\n")
    size = spool.write_message(queue_id, str(src))
    with open(spool.path(queue_id), "rb") as f:
        assert f.read() == b"Subject: x\r\n\r\nbody\r\n"
    assert size == len(b"Subject: x\r\n\r\nbody\r\n")
    assert not [n for n in os.listdir(spool.directory) if n.endswith(".tmp")]
    with pytest.raises(ValueError):
        spool.path("../etc/passwd")


def test_records_and_due_index(spool):
    spool.env.write_sync(lambda txn: spool.put(txn, message("AAAAAAAA01", 50.0, 10.0)))
    spool.env.write_sync(lambda txn: spool.put(txn, message("AAAAAAAA02", 30.0)))
    with spool.env.read() as txn:
        assert spool.due(txn, 5.0) == ([], 10.0)
        assert spool.due(txn, 30.0) == (["AAAAAAAA01", "AAAAAAAA02"], None)
        m = spool.get(txn, "AAAAAAAA01")
    assert m.next_attempt() == 10.0
    # A recipient done: the due entry moves to the remaining one.
    m.recipients[1].state = FAILED
    m.recipients[1].report = "failed"
    spool.env.write_sync(lambda txn: spool.put(txn, m))
    with spool.env.read() as txn:
        assert spool.due(txn, 30.0) == (["AAAAAAAA02"], 50.0)
        assert not spool.get(txn, "AAAAAAAA01").finished()  # a DSN is pending
    assert spool.env.write_sync(lambda txn: spool.reschedule(txn, "AAAAAAAA01", 1.0))
    with spool.env.read() as txn:
        assert spool.due(txn, 1.0) == (["AAAAAAAA01"], 30.0)
        got = spool.get(txn, "AAAAAAAA01")
    assert [r.state for r in got.recipients] == [QUEUED, FAILED]
    assert got.recipients[1].report == "failed"
    with spool.env.read() as txn:
        assert spool.stats(txn) == (2, 0.0)
    spool.env.write_sync(lambda txn: spool.delete(txn, "AAAAAAAA01"))
    with spool.env.read() as txn:
        assert spool.get(txn, "AAAAAAAA01") is None
        assert spool.due(txn, 100.0) == (["AAAAAAAA02"], None)
        assert [m.id for m in spool.all(txn)] == ["AAAAAAAA02"]


def test_sweep_orphans(spool):
    kept, orphan = new_id(), new_id()
    spool.write_message(kept, b"x\r\n")
    spool.write_message(orphan, b"y\r\n")
    spool.env.write_sync(lambda txn: spool.put(txn, message(kept, 0.0)))
    assert spool.sweep_orphans() == []  # too young to be judged
    assert spool.sweep_orphans(min_age=-1) == [orphan + ".eml"]
    assert os.path.exists(spool.path(kept))
