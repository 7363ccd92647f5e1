# -*- test-case-name: tests.protocols.test_imap_commands, tests.protocols.test_imap_backpressure -*-
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
  a trickling client is caught by two deadlines that do not
  (xmail.limits.CommandDeadline, [limits] command_timeout and
  login_timeout): a command, literals included, must arrive within
  command_timeout of its first byte, and the login must be done within
  login_timeout of connecting.  `clock` is injectable (task.Clock in unit
  tests).
- SIGTERM drain (the factory's doStop, as SMTP does): a session between
  commands, or waiting for the client (IDLE, an AUTHENTICATE exchange),
  gets `* BYE` now; one running a command gets it once that command has
  finished (RFC 3501 §7.1.5).
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

from twisted.internet import defer, interfaces
from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger
from zope.interface import implementer

from xmail import metrics
from xmail.limits import LOGIN, CommandDeadline
from xmail.protocols.imap import (
    commands,  # noqa: F401  (fills the command registry)
    rev2,
    searchres,
    tokenizer,
)
from xmail.protocols.imap.commands.any_state import capability_line
from xmail.protocols.imap.grammar import BadCharset, GrammarError, command_name, parse_command
from xmail.protocols.imap.session import Disconnect, Session, State
from xmail.protocols.imap.sync import RecentTracker
from xmail.tls import close_notify_without_waiting

MAX_LINE = 65536  # bytes of one command line, literals excluded
MAX_LITERAL = 65536  # literal bytes in any command but APPEND
# Before login only LOGIN / AUTHENTICATE-sized literals (issue 16 #2): a
# stranger must not make us hold, or spool, megabytes.
PREAUTH_LITERAL = 8192
MAX_PENDING_INPUT = 256 * 1024  # buffered input before we stop reading
PREAUTH_TIMEOUT = 120.0  # seconds a connection may idle before logging in
# A literal above SPOOL_THRESHOLD, or one that would take the literals one
# command holds in memory past MAX_MEMORY_LITERALS, is written to a file
# under data_dir/tmp as it arrives: per connection at most ~MAX_PENDING_INPUT
# + MAX_LINE + MAX_MEMORY_LITERALS bytes of client input sit in memory.
SPOOL_THRESHOLD = 256 * 1024
MAX_MEMORY_LITERALS = 256 * 1024
INFLATE_CHUNK = 65536  # decompressed bytes produced per step (RFC 4978)


class TempFileSpool:
    """A large literal written to a file under data_dir/tmp as it arrives, so
    a 40 MB APPEND does not sit in memory; released once its command is done.
    data_dir/tmp (0700, on the store's file system) rather than the system's
    temporary directory: it is private, and counted with the mail data."""

    def __init__(self, owners: list[TempFileSpool], tmp_dir: str):
        os.makedirs(tmp_dir, mode=0o700, exist_ok=True)
        self._file = tempfile.NamedTemporaryFile(prefix="imap-literal-", dir=tmp_dir, delete=False)
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
        self._append_limit = ctx.settings.limits.max_message_size
        self._spools: list[TempFileSpool] = []  # literals of the command being run
        tmp_dir = ctx.settings.path("tmp")
        self.reader = tokenizer.CommandReader(
            max_line=MAX_LINE,
            literal_limit=self._literal_limit,
            spool=lambda size: TempFileSpool(self._spools, tmp_dir),
            spool_threshold=SPOOL_THRESHOLD,
            max_memory_literals=MAX_MEMORY_LITERALS,
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
        self.deadline: CommandDeadline | None = None  # set when connected
        self._login_overdue = False  # login_timeout passed while a command ran
        self._shutdown_pending = False  # SIGTERM: BYE once the command is done

    # -- connection ------------------------------------------------------------------------
    def connectionMade(self) -> None:
        peer = self.transport.getPeer()
        self.client_host = getattr(peer, "host", "")
        self.transport.registerProducer(self, True)
        self._timeout_call = self.clock.callLater(self._timeout(), self._timed_out)
        limits = self.ctx.settings.limits
        self.deadline = CommandDeadline(self.clock, command_timeout=limits.command_timeout,
                                        login_timeout=limits.login_timeout,
                                        on_expired=self._deadline_passed)
        factory = getattr(self, "factory", None)
        if factory is not None:
            factory.sessions.add(self)
        self.write(b"* OK [" + capability_line(self.session) + b"] xmail IMAP4rev1 ready\r\n")

    def _literal_limit(self, items: list[Any]) -> int:
        """Literal bytes the command being read may carry.  The login state
        is checked first: the APPEND allowance is for users, not strangers
        (issue 16 #2); the tokenizer asks when the literal is announced, after
        every earlier command (a pipelined LOGIN) has finished."""
        if self.session.state is State.NOT_AUTHENTICATED:
            return PREAUTH_LITERAL
        return self._append_limit if command_name(items) == "APPEND" else MAX_LITERAL

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
        if self.deadline is not None:
            self.deadline.received(len(data))
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
        if self.deadline is not None:
            self.deadline.stop()
        factory = getattr(self, "factory", None)
        if factory is not None:
            factory.sessions.discard(self)
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

    def _deadline_passed(self, kind: str) -> None:
        if self._closed:
            return
        if kind == LOGIN:
            if self.session.state is not State.NOT_AUTHENTICATED:
                return
            if self._busy and self._raw_waiter is None:
                self._login_overdue = True  # a LOGIN being checked: judge it first
                return
            self.write(b"* BYE login took too long\r\n")  # RFC 3501 §7.1.5
        else:
            self.write(b"* BYE command took too long to arrive\r\n")
        self.close()

    def _update_deadline(self) -> None:
        """The command clock runs only while the client owes the rest of a
        command: not while we run one or wait for it to read our output."""
        if self.deadline is None or self._closed:
            return
        if self._busy or self._paused_output or (self.reader.idle() and not self._compressed_input):
            self.deadline.idle()
        else:
            self.deadline.pending()

    def shutdown(self) -> None:
        """SIGTERM drain: BYE now when between commands or waiting for the
        client, else once the running command has finished."""
        if self._closed:
            return
        if self._busy and self._raw_waiter is None:
            self._shutdown_pending = True
            return
        self.write(b"* BYE [UNAVAILABLE] server shutting down\r\n")
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
                close_notify_without_waiting(self.transport)
            self.transport.loseConnection()

    # -- IPushProducer (our output) ------------------------------------------------------------
    @property
    def waiting_for_reader(self) -> bool:
        """A command is parked until the client reads: output paused and a
        drain() waiter pending (the back-pressure tests' explicit signal)."""
        return self._paused_output and bool(self._drain_waiters)

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
        self._pump_events()
        self._update_deadline()

    def _pump_events(self) -> None:
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
            if event.fatal:
                # RFC 7888 §4: a non-synchronising literal over the limit;
                # its bytes may never end, so answer and close.
                if event.tag is not None:
                    self.write(event.tag + b" NO [TOOBIG] literal too large\r\n")
                self.write(b"* BYE [TOOBIG] literal too large, closing\r\n")
                raise Disconnect()
            self.session.bad_line(event.tag, event.reason, event.too_big)
            return False
        try:
            request = parse_command(event.items, utf8_names=rev2.utf8_names(self.session))
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
        if self.session.state is not State.NOT_AUTHENTICATED and self.deadline is not None:
            self.deadline.logged_in()
        elif self._login_overdue and not self._closed:
            self.write(b"* BYE login took too long\r\n")
            self.close()
            return
        if self._shutdown_pending and not self._closed:
            self.write(b"* BYE [UNAVAILABLE] server shutting down\r\n")
            self.close()
            return
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
        self.sessions: set[IMAPServerProtocol] = set()
        self.stopping = False

    def buildProtocol(self, addr: Any) -> IMAPServerProtocol:
        self.stopping = False  # listening again after a restart
        proto = IMAPServerProtocol(self.ctx, implicit_tls=self.implicit_tls, recent=self.recent,
                                   clock=self.clock)
        proto.factory = self
        return proto

    def doStop(self) -> None:
        """The last listening port closed (SIGTERM): every session ends with
        `* BYE` once its current command is done (as SMTP's 421)."""
        super().doStop()
        self.stopping = True
        for proto in list(self.sessions):
            proto.shutdown()
