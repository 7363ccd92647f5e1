"""The spool is read a chunk at a time on the pool, and never ahead of
what the connection has taken: at most one chunk read but not written."""

from __future__ import annotations

import io
import threading
from typing import Any

from twisted.internet import defer

from tests.support.server import in_reactor, reactor_running
from xmail.filter.scanners.stream import ChunkPump, SpoolBodyProducer, open_sized, opener_for


class CountingFile(io.BytesIO):
    def __init__(self, data: bytes):
        super().__init__(data)
        self.reads = 0
        self.threads: set[str] = set()

    def read(self, size: int | None = -1) -> bytes:
        self.reads += 1
        self.threads.add(threading.current_thread().name)
        return super().read(size)


class SlowConsumer:
    """Pauses its producer at every write and resumes it on a later turn,
    like a transport whose buffer is full."""

    def __init__(self, f: CountingFile):
        self.f = f
        self.producer: Any = None
        self.parts: list[bytes] = []
        self.ahead: list[int] = []

    def write(self, data: bytes) -> None:
        self.parts.append(data)
        self.ahead.append(self.f.reads - len(self.parts))
        self.producer.pauseProducing()
        reactor_running().callLater(0, self.producer.resumeProducing)


def test_the_pump_never_reads_ahead_and_reads_on_the_pool(work: Any) -> None:
    data = bytes(range(256)) * 4000  # ~1 MB
    f = CountingFile(data)
    consumer = SlowConsumer(f)

    def run() -> Any:
        pump = ChunkPump(f, work, consumer.write, chunk_size=8192)
        consumer.producer = pump
        return pump.run()

    written = in_reactor(run)
    assert written == len(data) and b"".join(consumer.parts) == data
    assert max(consumer.ahead) == 0  # each chunk written before the next is read
    assert f.closed and f.threads and not any(t == "reactor" for t in f.threads)


def test_a_stopped_pump_closes_the_file_and_stays_silent(work: Any) -> None:
    f = CountingFile(b"x" * 100_000)
    fired: list[Any] = []
    pumps: list[ChunkPump] = []

    def write(_data: bytes) -> None:
        pumps[0].stop()

    def run() -> Any:
        pumps.append(ChunkPump(f, work, write, chunk_size=1000))
        pumps[0].run().addBoth(fired.append)
        # A pool job queued behind the read: once it has run, the pump
        # has had its chance to read on (THREADS=2, so run two).
        return defer.gatherResults([work.run(lambda: None), work.run(lambda: None)])

    in_reactor(run)
    in_reactor(lambda: None)  # and one more reactor turn for the pump's callbacks
    assert fired == [] and f.closed and f.reads == 1


def test_the_body_producer_knows_its_length(work: Any, tmp_path: Any) -> None:
    path = tmp_path / "m.eml"
    path.write_bytes(b"a" * 70_000)
    f, length = in_reactor(work.run, open_sized, opener_for(str(path)))
    producer = SpoolBodyProducer(f, length, work)
    assert producer.length == 70_000
    received = []

    class Consumer:
        def write(self, data: bytes) -> None:
            received.append(data)

    in_reactor(producer.startProducing, Consumer())
    assert b"".join(received) == b"a" * 70_000 and f.closed
