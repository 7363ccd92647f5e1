"""A StringTransport that behaves like a real one towards its producer: once
more than `limit` bytes wait unread it calls the registered streaming
producer's pauseProducing, as twisted's FileDescriptor does when its write
buffer passes bufferSize; `take()` is the client reading, which resumes it.
Used to prove that a protocol's pending output stays bounded when the
client never reads (issue 16 #3)."""

from __future__ import annotations

from typing import Any

from twisted.internet.testing import StringTransport


class WriteBoundedTransport(StringTransport):
    def __init__(self, limit: int = 65536, **kw: Any):
        super().__init__(**kw)
        self.limit = limit
        self.peak = 0  # the most output ever waiting unread
        self._producer_paused = False

    def write(self, data: bytes) -> None:
        super().write(data)
        waiting = len(self.io.getvalue())
        self.peak = max(self.peak, waiting)
        if (waiting > self.limit and self.producer is not None and self.streaming
                and not self._producer_paused):
            self._producer_paused = True
            self.producer.pauseProducing()

    def take(self) -> bytes:
        """The client reads everything; the producer may go on."""
        data = self.value()
        self.clear()
        if self._producer_paused and self.producer is not None:
            self._producer_paused = False
            self.producer.resumeProducing()
        return data
