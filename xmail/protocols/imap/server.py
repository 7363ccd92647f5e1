# -*- test-case-name: tests.protocols.test_imap_server -*-
"""The Twisted glue: bytes in to the tokenizer, commands to the session,
bytes out with back-pressure.

- One command runs at a time; input that arrives meanwhile waits in the
  tokenizer's buffer, and when that buffer passes `MAX_PENDING_INPUT` the
  transport stops reading (a flooding client is throttled by TCP, not by
  us holding its bytes).  Between pipelined commands the protocol yields
  to the reactor so other connections get their turn.
- The protocol is the transport's streaming producer (IPushProducer): when
  the client does not read, `pauseProducing` makes `drain()` return a
  Deferred that FETCH awaits between messages, and no further command runs
  until the transport has drained (pending output stays bounded).
- The autologout timer (RFC 3501 §5.4) restarts with every byte received;
  `clock` is injectable (task.Clock in unit tests).
- COMPRESS=DEFLATE (RFC 4978) sits between the transport (TLS or not) and
  the tokenizer: output is deflated as written and flushed (Z_SYNC_FLUSH)
  once per reactor turn, so every response burst — a tagged reply, the IDLE
  continuation, what IDLE pushes — reaches the client whole; input is
  inflated at most INFLATE_CHUNK at a time and only while the tokenizer's
  buffer is under MAX_PENDING_INPUT, so a decompression bomb costs CPU for
  what is consumed, never memory.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import zlib
from typing import Any

from OpenSSL import SSL
from twisted.internet import defer, interfaces
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from xmail.ops import metrics
from xmail.protocols.imap import (
    commands,  # noqa: F401  (fills the command registry)
    searchres,
    tokenizer,
)
from xmail.protocols.imap.commands.any_state import capability_line
from xmail.protocols.imap.grammar import BadCharset, GrammarError, command_name, parse_command
from xmail.protocols.imap.session import Disconnect, Session, State
from xmail.protocols.imap.sync import RecentTracker

MAX_LINE = 65536  # bytes of one command line, literals excluded
MAX_LITERAL = 65536  # literal bytes in any command but APPEND
MAX_PENDING_INPUT = 256 * 1024  # buffered input before we stop reading
PREAUTH_TIMEOUT = 120.0  # seconds a connection may idle before logging in
SPOOL_THRESHOLD = 1 << 20  # APPEND literals above this go to a temporary file
INFLATE_CHUNK = 65536  # decompressed bytes produced per step (RFC 4978)


class TempFileSpool:
    """A large literal written to a temporary file as it arrives, so a 40 MB
    APPEND does not sit in memory; released once its command is done."""

    def __init__(self, owners: list[TempFileSpool]):
        self._file = tempfile.NamedTemporaryFile(prefix="xmail-imap-literal-", delete=False)
        self.path = self._file.name
        self.size = 0
        self._released = False
        owners.append(self)

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self.size += len(data)

    def finish(self) -> tokenizer.SpooledLiteral:
        self._file.close()
        return tokenizer.SpooledLiteral(self.path, self.size)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        self._file.close()
        with contextlib.suppress(OSError):
            os.unlink(self.path)


@implementer(interfaces.IPushProducer)
class IMAPServerProtocol(Protocol):
    _log = Logger()

    def __init__(self, ctx: Any, *, implicit_tls: bool, recent: RecentTracker, clock: Any = None):
        self.ctx = ctx
        self.implicit_tls = implicit_tls
        self.clock = clock if clock is not None else ctx.reactor
        self.is_tls = implicit_tls
        self.client_host = ""
        append_limit = ctx.settings.limits.max_message_size
        self._spools: list[TempFileSpool] = []  # literals of the command being run
        self.reader = tokenizer.CommandReader(
            max_line=MAX_LINE,
            literal_limit=lambda items: append_limit if command_name(items) == "APPEND" else MAX_LITERAL,
            spool=lambda size: TempFileSpool(self._spools),
            spool_threshold=SPOOL_THRESHOLD,
        )
        self.session = Session(ctx, self, recent, clock=self.clock)
        self._busy = False
        self._closed = False
        self._raw_waiter: defer.Deferred[bytes] | None = None
        self._paused_output = False
        self._drain_waiters: list[defer.Deferred[None]] = []
        self._reading_paused = False
        self._timeout_call: Any = None
        self._pump_call: Any = None
        # RFC 4978 state: None until COMPRESS DEFLATE's tagged OK is out.
        self._deflater: Any = None
        self._inflater: Any = None
        self._compressed_input = b""  # received, not inflated yet
        self._flush_call: Any = None

    # -- connection ------------------------------------------------------------------------
    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.client_host = getattr(peer, "host", "")
        self.transport.registerProducer(self, True)
        self._timeout_call = self.clock.callLater(self._timeout(), self._timed_out)
        self.write(b"* OK [" + capability_line(self.session) + b"] xmail IMAP4rev1 ready\r\n")

    def _timeout(self) -> float:
        configured = float(self.ctx.settings.limits.imap_idle_timeout)
        if self.session.state is State.NOT_AUTHENTICATED:
            # RFC 3501 §5.4 asks for >= 30 minutes only after login; idle
            # unauthenticated connections are cheap to open, so end them sooner.
            return min(configured, PREAUTH_TIMEOUT)
        return configured

    def _restart_timer(self) -> None:
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.reset(self._timeout())

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        self._restart_timer()
        if self._inflater is not None:
            self._compressed_input += data
            self._inflate_input()
        else:
            self.reader.feed(data)
        if self._input_backlog() and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        self._pump()

    def _input_backlog(self) -> bool:
        return self.reader.buffered() > MAX_PENDING_INPUT or len(self._compressed_input) > MAX_PENDING_INPUT

    def _inflate_input(self) -> None:
        """Inflate what was received, INFLATE_CHUNK at a time, while the
        tokenizer has room; the rest waits compressed (RFC 4978 §4: bounded)."""
        inflater = self._inflater
        while self._compressed_input and self.reader.buffered() < MAX_PENDING_INPUT:
            try:
                plain = inflater.decompress(self._compressed_input, INFLATE_CHUNK)
            except zlib.error:
                self._log.info("IMAP client sent invalid DEFLATE data")
                self._compressed_input = b""
                self.abort()
                return
            self._compressed_input = inflater.unconsumed_tail
            if plain:
                self.reader.feed(plain)
            elif inflater.eof:
                self._compressed_input = b""  # a client may not end the stream; ignore the rest

    def connectionLost(self, reason: Any = None) -> None:
        self._closed = True
        if self._flush_call is not None and self._flush_call.active():
            self._flush_call.cancel()
        if self._timeout_call is not None and self._timeout_call.active():
            self._timeout_call.cancel()
        if self._pump_call is not None and self._pump_call.active():
            self._pump_call.cancel()
        waiter, self._raw_waiter = self._raw_waiter, None
        if waiter is not None:
            waiter.errback(ConnectionError("connection lost"))
        self._fire_drain()
        self.reader.close()
        if not self._busy:
            self._release_spools()
        self.session.close()

    def _timed_out(self) -> None:
        # RFC 3501 §5.4: autologout after at least 30 minutes of inactivity.
        self.write(b"* BYE autologout: idle for too long\r\n")
        self.close()

    # -- the Connection protocol of session.py --------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._closed:
            return
        if self._deflater is None:
            self.transport.write(data)
            return
        compressed = self._deflater.compress(data)
        if compressed:
            self.transport.write(compressed)
        if self._flush_call is None:
            self._flush_call = self.clock.callLater(0, self._flush_deflate)

    def _flush_deflate(self) -> None:
        # RFC 4978 §4: flush so the client can decompress the whole burst.
        self._flush_call = None
        if self._deflater is not None and not self._closed:
            self.transport.write(self._deflater.flush(zlib.Z_SYNC_FLUSH))

    def start_compress(self) -> None:
        """Called right after COMPRESS DEFLATE's tagged OK went out raw."""
        self._deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        self._inflater = zlib.decompressobj(-15)
        # Anything the client sent behind the command is already compressed.
        self._compressed_input = self.reader.take_buffered()
        self._inflate_input()

    def drain(self) -> defer.Deferred[None] | None:
        """None when more may be written now; else a Deferred that fires when
        the transport has drained, or fails when the connection is gone (so
        a long FETCH stops instead of reading files for nobody)."""
        if self._closed:
            return defer.fail(ConnectionError("connection closed"))
        if self._paused_output and self._deflater is not None:
            self._flush_deflate()  # what waits for the client must reach it
        if not self._paused_output:
            return None
        d: defer.Deferred[None] = defer.Deferred()
        self._drain_waiters.append(d)
        return d

    def read_raw_line(self) -> defer.Deferred[bytes]:
        self._raw_waiter = defer.Deferred()
        self.reader.expect_raw_line()
        d = self._raw_waiter
        self.clock.callLater(0, self._pump)
        return d

    def tls_available(self) -> bool:
        return self.ctx.tls is not None and interfaces.ITLSTransport.providedBy(self.transport)

    def start_tls(self) -> None:
        # Plaintext pipelined behind STARTTLS must not be run as if it came
        # over TLS (CVE-2011-0411 class): drop it.
        self.reader.discard_buffered()
        self.transport.startTLS(self.ctx.tls)
        self.is_tls = True

    def abort(self) -> None:
        self._closed = True
        self.transport.abortConnection()

    def close(self) -> None:
        if not self._closed:
            if self._deflater is not None:
                self._flush_deflate()  # the BYE and last reply
            self._closed = True
            if self.is_tls:
                self._one_way_tls_shutdown()
            self.transport.loseConnection()

    def _one_way_tls_shutdown(self) -> None:
        # Twisted's TLS layer waits for the client's close_notify before it
        # closes TCP; clients such as mbsync wait for our EOF first, and both
        # would hang.  Send close_notify and close without waiting, as
        # RFC 8446 §6.1 allows (the session is over: nothing more to read).
        try:
            handle = self.transport.getHandle()
        except Exception:
            return
        if isinstance(handle, SSL.Connection):
            handle.set_shutdown(handle.get_shutdown() | SSL.RECEIVED_SHUTDOWN)

    # -- IPushProducer (our output) ------------------------------------------------------------
    def pauseProducing(self) -> None:
        self._paused_output = True

    def resumeProducing(self) -> None:
        self._paused_output = False
        self._fire_drain()
        if not self._busy and not self._closed and self._pump_call is None:
            self._pump_call = self.clock.callLater(0, self._pump)

    def stopProducing(self) -> None:
        self._closed = True
        self._fire_drain()

    def _fire_drain(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for d in waiters:
            if self._closed:
                d.errback(ConnectionError("connection closed"))
            else:
                d.callback(None)

    # -- the command loop ------------------------------------------------------------------------
    def _pump(self) -> None:
        self._pump_call = None
        while not self._closed:
            if self._busy and self._raw_waiter is None:
                return
            if self._paused_output:
                # The client is not reading its answers: run nothing more until
                # it does; input then piles up to MAX_PENDING_INPUT and stops.
                return
            event = self.reader.next_event()
            if event is None:
                break
            try:
                dispatched = self._handle(event)
            except Disconnect:
                self.close()
                return
            if dispatched:
                break  # one command per reactor turn: _command_done schedules the next
        if self._compressed_input and self.reader.buffered() < MAX_PENDING_INPUT // 2 and not self._closed:
            # Room again: inflate more of what waits, and run what it holds.
            self._inflate_input()
            if self.reader.buffered() and self._pump_call is None and not self._busy:
                self._pump_call = self.clock.callLater(0, self._pump)
        if (self._reading_paused and not self._input_backlog() and not self._closed
                and self.reader.buffered() < MAX_PENDING_INPUT // 2):
            self._reading_paused = False
            self.transport.resumeProducing()

    def _handle(self, event: tokenizer.Event) -> bool:
        """Act on one framing event; True when a command was started."""
        if isinstance(event, tokenizer.RawLine):
            waiter, self._raw_waiter = self._raw_waiter, None
            if waiter is not None:
                waiter.callback(event.line)
            else:
                self.session.bad_line(None, "unexpected line")
            return False
        if self._raw_waiter is not None:
            # A raw line was expected but the tokenizer refused it (too long).
            waiter, self._raw_waiter = self._raw_waiter, None
            waiter.callback(b"")
            return False
        if isinstance(event, tokenizer.ContinueLiteral):
            # RFC 3501 §7.5: go ahead with the literal.
            self.write(b"+ Ready for literal data\r\n")
            return False
        if isinstance(event, tokenizer.Rejected):
            self._release_spools()
            self.session.bad_line(event.tag, event.reason, event.too_big)
            return False
        try:
            request = parse_command(event.items)
        except GrammarError as e:
            self._release_spools()
            if getattr(e, "resets_search_result", False):
                searchres.reset(self.session)  # a SEARCH RETURN (SAVE) that is BAD: RFC 5182 §2.1
            self.session.bad_line(getattr(e, "tag", None), str(e))
            return False
        except BadCharset as e:
            tag = getattr(e, "tag", None) or b"*"
            # RFC 3501 §6.4.4: NO [BADCHARSET] lists the charsets we support.
            self.write(tag + b" NO [BADCHARSET (UTF-8 US-ASCII)] unsupported charset\r\n")
            return False
        self._busy = True
        started = metrics.clock()
        d = metrics.track("imap", request.name, defer.Deferred.fromCoroutine(self.session.execute(request)),
                          started)
        d.addCallbacks(self._command_done, self._command_failed)
        return True

    def _release_spools(self) -> None:
        spools, self._spools = self._spools, []
        for spool in spools:
            spool.release()

    def _command_done(self, _: Any) -> None:
        self._busy = False
        self._release_spools()
        self._restart_timer()  # the state (and so the timeout) may have changed
        if not self._closed and self._pump_call is None:
            # Yield to the reactor before the next pipelined command.
            self._pump_call = self.clock.callLater(0, self._pump)

    def _command_failed(self, failure: Any) -> None:
        self._busy = False
        self._release_spools()
        if failure.check(Disconnect):
            self.close()
            return
        if failure.check(ConnectionError) or self._closed:
            self.close()
            return
        self._log.failure("IMAP session failed", failure)
        self.write(b"* BYE internal server error\r\n")
        self.close()


_trackers: dict[int, tuple[Any, RecentTracker]] = {}


def recent_tracker(ctx: Any) -> RecentTracker:
    """One \\Recent memory per ServerContext, shared by the imap and imaps
    listeners (and by the workers through ctx.recent_claims)."""
    entry = _trackers.get(id(ctx))
    if entry is None or entry[0] is not ctx:
        entry = (ctx, RecentTracker(claims=getattr(ctx, "recent_claims", None)))
        _trackers[id(ctx)] = entry
    return entry[1]


class IMAPFactory(Factory):
    """`imap` (STARTTLS) and `imaps` (implicit TLS, wrapped by the service)."""

    protocol = IMAPServerProtocol
    noisy = False

    def __init__(self, ctx: Any, *, implicit_tls: bool, clock: Any = None):
        self.ctx = ctx
        self.implicit_tls = implicit_tls
        self.clock = clock
        self.recent = recent_tracker(ctx)

    def buildProtocol(self, addr: Any) -> IMAPServerProtocol:
        proto = IMAPServerProtocol(self.ctx, implicit_tls=self.implicit_tls, recent=self.recent,
                                   clock=self.clock)
        proto.factory = self
        return proto
