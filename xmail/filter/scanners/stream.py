# -*- test-case-name: tests.filter.scanners.test_stream -*-
"""Streaming a message from the spool to a scanner, a chunk at a time.

The spool file is opened and read on the pipeline's thread pool
(`FilterWork`: reading a big file is blocking I/O, never done on the
reactor); each chunk is handed to the connection on the reactor and the
next one is read only when the connection takes more (push-producer
pause/resume).  At most one chunk is in flight and one in the
transport's buffer: memory stays flat whatever the message size.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, Any

from twisted.internet import defer
from twisted.internet.interfaces import IPushProducer
from twisted.web.iweb import IBodyProducer
from zope.interface import implementer

CHUNK = 64 * 1024


def open_sized(opener: Callable[[], IO[bytes]]) -> tuple[IO[bytes], int]:
    """Open the message and measure it (run on the pool: a stat and a
    seek on a spool file; `Transaction.open` or a learner's source)."""
    f = opener()
    try:
        f.seek(0, 2)
        length = f.tell()
        f.seek(0)
    except BaseException:
        f.close()
        raise
    return f, length


def opener_for(source: bytes | str) -> Callable[[], IO[bytes]]:
    """A path or the message's bytes -> something `open_sized` can call."""
    if isinstance(source, str):
        return lambda: open(source, "rb")
    return lambda: io.BytesIO(source)


@implementer(IPushProducer)
class ChunkPump:
    """Copies a file to `write` chunk by chunk, reading on the pool and
    waiting while the consumer is paused.  `run()` -> Deferred fired with
    the number of octets written once the file is exhausted; `stop()`
    ends the copy early (the Deferred then never fires)."""

    def __init__(self, f: IO[bytes], work: Any, write: Callable[[bytes], None], chunk_size: int = CHUNK,
                 length: int | None = None):
        self.f = f
        self.length = length
        self.work = work
        self.write = write
        self.chunk_size = chunk_size
        self.written = 0
        self._paused: defer.Deferred[None] | None = None
        self._stopped = False

    # IPushProducer: the transport (or HTTP client) calls these.
    def pauseProducing(self) -> None:
        if self._paused is None:
            self._paused = defer.Deferred()

    def resumeProducing(self) -> None:
        paused, self._paused = self._paused, None
        if paused is not None:
            paused.callback(None)

    def stopProducing(self) -> None:
        self._stopped = True
        self.resumeProducing()

    def stop(self) -> None:
        self.stopProducing()

    @defer.inlineCallbacks
    def _copy(self) -> Any:
        try:
            while not self._stopped:
                if self._paused is not None:
                    yield self._paused
                    continue
                size = self.chunk_size
                if self.length is not None:
                    size = min(size, self.length - self.written)  # never past the announced length
                chunk = yield self.work.read(self.f, size)
                if self._stopped:
                    break
                if not chunk:
                    return self.written
                self.written += len(chunk)
                self.write(chunk)
                if self.length is not None and self.written >= self.length:
                    # Done in the same turn as the last write, not one pool
                    # read later: an HTTP client still "transmitting" when
                    # the reply arrives mishandles a bad one (twisted.web).
                    return self.written
        finally:
            self.f.close()
        # Stopped: the caller has given up on this copy; say so to it.
        raise defer.CancelledError("stopped")

    def run(self) -> defer.Deferred[int]:
        done: defer.Deferred[int] = defer.Deferred()

        def finished(result: Any) -> None:
            if isinstance(result, int):
                done.callback(result)
            elif not self._stopped:
                done.errback(result)  # a read error
            # else: stopped by the consumer, which no longer listens

        self._copy().addBoth(finished)
        return done


@implementer(IBodyProducer)
class SpoolBodyProducer:
    """twisted.web's IBodyProducer over a spool file, like
    `FileBodyProducer` but reading on the pool (`FilterWork`); `length`
    known up front so the request carries a Content-Length."""

    def __init__(self, f: IO[bytes], length: int, work: Any, chunk_size: int = CHUNK):
        self.f = f
        self.length = length
        self.work = work
        self.chunk_size = chunk_size
        self._pump: ChunkPump | None = None

    def startProducing(self, consumer: Any) -> defer.Deferred[None]:
        self._pump = ChunkPump(self.f, self.work, consumer.write, self.chunk_size, self.length)
        return self._pump.run().addCallback(lambda _n: None)

    def pauseProducing(self) -> None:
        if self._pump is not None:
            self._pump.pauseProducing()

    def resumeProducing(self) -> None:
        if self._pump is not None:
            self._pump.resumeProducing()

    def stopProducing(self) -> None:
        if self._pump is not None:
            self._pump.stopProducing()
        else:
            self.f.close()
