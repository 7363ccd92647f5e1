"""The pipeline's bounded pool runs work off the reactor thread, at most THREADS at once."""

from __future__ import annotations

import threading

from twisted.internet import defer

from tests.support.server import in_reactor, reactor_running
from tests.support.wait import wait_until
from xmail.filter.work import FilterWork


def test_work_runs_off_the_reactor_thread_and_is_bounded() -> None:
    reactor = reactor_running()
    work = FilterWork(reactor, threads=2)
    gate = threading.Event()
    running: list[int] = []
    peak: list[int] = []
    lock = threading.Lock()

    def job() -> str:
        with lock:
            running.append(1)
            peak.append(len(running))
        gate.wait(10)
        with lock:
            running.pop()
        return threading.current_thread().name

    def start() -> defer.Deferred:
        return defer.gatherResults([work.run(job) for _ in range(5)])

    result: list = []
    in_reactor(lambda: start().addBoth(result.append) and None)
    wait_until(lambda: len(running) == 2, what="two jobs running")
    # Three jobs wait for a thread: the pool never grows past its bound.
    assert len(work._pool.threads) == 2 and not result
    gate.set()
    wait_until(lambda: result, timeout=10)
    assert all("xmail-filter" in name for name in result[0])
    assert max(peak) <= 2
    in_reactor(work.stop)


def test_bytes_in_memory_skip_the_pool(tmp_path) -> None:
    import io

    from xmail.filter.interfaces import Transaction

    reactor = reactor_running()
    work = FilterWork(reactor)
    tx = Transaction(mode="mx", id="1", client_ip="", helo="", mail_from="", recipients=(), user=None,
                     header_section=b"", size=1, hostname="h", source=lambda: b"x")
    assert getattr(tx.opener, "in_memory", False)
    in_reactor(work.open, tx.opener)
    in_reactor(work.read, io.BytesIO(b"abc"), 2)
    path = tmp_path / "m"
    path.write_bytes(b"on disk")
    on_disk = Transaction(mode="mx", id="1", client_ip="", helo="", mail_from="", recipients=(), user=None,
                          header_section=b"", size=7, hostname="h", source=lambda: str(path))
    assert not getattr(on_disk.opener, "in_memory", False)
    f = in_reactor(work.open, on_disk.opener)
    assert in_reactor(work.read, f, 100) == b"on disk"
    f.close()
    where_opened: list[str] = []
    in_reactor(work.open, lambda: where_opened.append(threading.current_thread().name) or io.BytesIO())
    assert where_opened and "xmail-filter" in where_opened[0]  # an unmarked opener runs on the pool
    in_reactor(work.stop)
