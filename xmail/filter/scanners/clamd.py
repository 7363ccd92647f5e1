# -*- test-case-name: tests.filter.scanners.test_clamd -*-
"""A small native client for ClamAV's clamd: the zINSTREAM command.

The protocol (clamd(8), "INSTREAM"): the client sends `zINSTREAM\\0`
(the `z` prefix: every reply ends with a NUL instead of a newline), then
the data as chunks, each a 4-octet big-endian length and that many
octets, then a zero length.  clamd answers once:

    stream: OK\\0
    stream: Eicar-Signature FOUND\\0
    INSTREAM size limit exceeded. ERROR\\0      (over StreamMaxLength)

and may answer the size error and close while chunks are still coming.

`ClamdReplyParser` is the reply's framing without I/O (bounded: a reply
is one short line); `ClamdScanProtocol` streams the spool file with a
`ChunkPump` and hands received bytes to the parser; `ClamdClient.scan`
connects (`unix:PATH` or `tcp:HOST:PORT`, DESIGN.md `[filter] clamd`).
"""

from __future__ import annotations

import re
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO, Any

from twisted.internet import defer
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.internet.endpoints import (
    HostnameEndpoint,
    TCP4ClientEndpoint,
    TCP6ClientEndpoint,
    UNIXClientEndpoint,
)
from twisted.internet.protocol import Factory, Protocol
from twisted.python.failure import Failure

from xmail.filter.scanners import ScannerError, ScannerLimitError
from xmail.filter.scanners.stream import CHUNK, ChunkPump

MAX_REPLY = 1024  # a reply is one short line; more without a NUL is garbage
_END = struct.pack(">I", 0)
# "stream: <signature name> FOUND"; names are printable ASCII without
# spaces in practice, but stay lenient (ExtendedDetectionInfo adds "(md5:size)").
_FOUND = re.compile(rb"stream: ([\x21-\x7e][\x20-\x7e]{0,200}) FOUND")


@dataclass(frozen=True, slots=True)
class ClamdResult:
    virus: str | None  # the signature's name; None when clean

    @property
    def clean(self) -> bool:
        return self.virus is None


class ClamdReplyParser:
    """Collects one NUL-terminated reply (the `z` form of clamd's
    commands); `feed` returns it once complete, raises ScannerError when
    MAX_REPLY octets arrive without the NUL."""

    def __init__(self, limit: int = MAX_REPLY):
        self.limit = limit
        self._buffer = bytearray()
        self.reply: bytes | None = None

    def feed(self, data: bytes) -> bytes | None:
        if self.reply is not None:
            return self.reply  # anything after the reply is ignored
        end = data.find(b"\0")
        if end < 0:
            if len(self._buffer) + len(data) > self.limit:
                raise ScannerError(f"clamd reply longer than {self.limit} octets without its end")
            self._buffer += data
            return None
        if len(self._buffer) + end > self.limit:
            raise ScannerError(f"clamd reply longer than {self.limit} octets")
        self._buffer += data[:end]
        self.reply = bytes(self._buffer)
        return self.reply

    @property
    def partial(self) -> bytes:
        return bytes(self._buffer)


def parse_reply(reply: bytes) -> ClamdResult:
    """One zINSTREAM reply -> ClamdResult, or ScannerError for anything
    but a clean or a found result (an ERROR, garbage)."""
    reply = reply.strip(b"\r\n ")
    if reply == b"stream: OK":
        return ClamdResult(None)
    found = _FOUND.fullmatch(reply)
    if found:
        return ClamdResult(found.group(1).decode("ascii"))
    shown = reply[:120].decode("ascii", "backslashreplace")
    if reply.endswith(b" ERROR"):
        if b"size limit" in reply:
            raise ScannerLimitError(f"message over clamd's StreamMaxLength ({shown})")
        raise ScannerError(f"clamd error: {shown}")
    raise ScannerError(f"unexpected clamd reply: {shown!r}")


class ClamdScanProtocol(Protocol):
    """One zINSTREAM exchange; `done` fires with the reply's ClamdResult
    or fails with ScannerError; cancelling it aborts the connection."""

    def __init__(self, f: IO[bytes], work: Any, chunk_size: int = CHUNK):
        self.f = f
        self.work = work
        self.chunk_size = chunk_size
        self.parser = ClamdReplyParser()
        self.pump: ChunkPump | None = None
        self.done: defer.Deferred[ClamdResult] = defer.Deferred(self._cancel)
        self._finished = False

    def connectionMade(self) -> None:
        self.transport.write(b"zINSTREAM\0")
        self.pump = ChunkPump(self.f, self.work, self._write_chunk, self.chunk_size)
        # The pump reads the next chunk only while the transport takes
        # more: flat memory for a message of any size.
        self.transport.registerProducer(self.pump, True)
        self.pump.run().addCallbacks(self._sent, self._read_failed)

    def _write_chunk(self, chunk: bytes) -> None:
        self.transport.writeSequence([struct.pack(">I", len(chunk)), chunk])

    def _sent(self, _octets: int) -> None:
        if self._finished:
            return
        self.transport.unregisterProducer()
        self.transport.write(_END)

    def _read_failed(self, failure: Failure) -> None:
        self._finish(failure)

    def dataReceived(self, data: bytes) -> None:
        if self._finished:
            return
        try:
            reply = self.parser.feed(data)
            if reply is None:
                return
            result: Any = parse_reply(reply)
        except ScannerError:
            result = Failure()
        self._finish(result)

    def connectionLost(self, reason: Failure = None) -> None:  # type: ignore[assignment]
        if self._finished:
            return
        partial = self.parser.partial
        if partial:
            why = f"clamd reply cut off: {partial[:80].decode('ascii', 'backslashreplace')!r}"
        else:
            why = f"clamd closed the connection without a reply ({reason.getErrorMessage()})"
        self._finish(Failure(ScannerError(why)), lose=False)

    def _finish(self, result: Any, lose: bool = True) -> None:
        if self._finished:
            return
        self._finished = True
        if self.pump is not None:
            self.pump.stop()
        else:
            self.f.close()
        if lose and self.transport is not None:
            if self.transport.producer is not None:
                self.transport.unregisterProducer()  # or the close would wait for it
            self.transport.loseConnection()
        if isinstance(result, Failure):
            self.done.errback(result)
        else:
            self.done.callback(result)

    def _cancel(self, _d: defer.Deferred[ClamdResult]) -> None:
        # The stage's timeout: drop the connection, stop reading the file.
        self._finished = True
        if self.pump is not None:
            self.pump.stop()
        if self.transport is not None:
            self.transport.abortConnection()


class _OneConnection(Factory):
    """connectProtocol's factory without its log lines: one connection per
    scan, and Factory's "Starting/Stopping factory" lines for each cost
    more CPU than the scan's own work."""

    noisy = False

    def __init__(self, protocol: Any):
        self.protocol_instance = protocol

    def buildProtocol(self, addr: Any) -> Any:
        return self.protocol_instance


def clamd_endpoint(reactor: Any, spec: str, timeout: float = 30) -> Any:
    """`unix:/run/clamav/clamd.ctl` or `tcp:HOST:PORT` -> a client endpoint."""
    kind, _, rest = spec.partition(":")
    if kind == "unix" and rest:
        return UNIXClientEndpoint(reactor, rest, timeout=timeout)
    if kind == "tcp" and ":" in rest:
        host, _, port = rest.rpartition(":")
        host = host.strip("[]")
        if isIPAddress(host):
            return TCP4ClientEndpoint(reactor, host, int(port), timeout=timeout)
        if isIPv6Address(host):
            return TCP6ClientEndpoint(reactor, host, int(port), timeout=timeout)
        return HostnameEndpoint(reactor, host, int(port), timeout=timeout)
    raise ValueError(f"clamd address {spec!r}: expected unix:PATH or tcp:HOST:PORT")


class ClamdClient:
    """Scans messages with one clamd (`[filter] clamd`)."""

    def __init__(self, spec: str, reactor: Any, work: Any, *, timeout: float = 20,
                 chunk_size: int = CHUNK):
        self.spec = spec
        self.reactor = reactor
        self.work = work
        self.timeout = timeout
        self.chunk_size = chunk_size
        self.endpoint = clamd_endpoint(reactor, spec, timeout)

    def scan(self, opener: Callable[[], IO[bytes]]) -> defer.Deferred[ClamdResult]:
        """-> Deferred[ClamdResult]; fails with ScannerError, or with
        TimeoutError after `timeout` seconds (a clamd that never answers).
        `opener` opens the message (`Transaction.open`); it runs on the pool."""
        return self._scan(opener).addTimeout(self.timeout, self.reactor)

    @defer.inlineCallbacks
    def _scan(self, opener: Callable[[], IO[bytes]]) -> Any:
        f = yield self.work.open(opener)
        protocol = ClamdScanProtocol(f, self.work, self.chunk_size)
        try:
            yield self.endpoint.connect(_OneConnection(protocol))
        except defer.CancelledError:
            f.close()
            raise
        except Exception as e:
            f.close()
            raise ScannerError(f"clamd at {self.spec}: {e}") from e
        result = yield protocol.done
        return result
