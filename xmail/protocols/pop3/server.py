# -*- test-case-name: tests.protocols.test_pop3_server -*-
"""The POP3 Twisted Protocol: thin glue between the socket, the sans-IO
parser and encoder, and the session state machine.

- Commands are handled one at a time in arrival order; while one waits (a
  login, an expunge, a message being streamed) later pipelined input stays in
  the parser's buffer, and reading from the socket pauses once that buffer
  holds more than `MAX_PENDING_INPUT` octets.
- The protocol is the transport's IPushProducer: while the client does not
  read, no further command is taken and no further chunk of a message file
  is read.  RETR/TOP of a large message stream the file (`MessageSender`,
  64 KiB at a time, read in a thread above 1 MiB), so a 40 MB message never
  sits in memory whole; a small one goes out in one write with its status
  line.
- The idle timer (limits.pop3_idle_timeout, RFC 1939 §3 "at least 10
  minutes") counts from the last command or the last chunk the client took.
  It restarts on any byte, so two deadlines that do not
  (xmail.limits.CommandDeadline, issue 16 #4) catch a trickling client: a
  command line must arrive within [limits] command_timeout of its first
  byte, and the login must be done within login_timeout of connecting.
- SIGTERM drain (the factory's doStop, as SMTP does): a session between
  commands gets `-ERR [SYS/TEMP]` and is closed without entering UPDATE
  (RFC 1939 §6: no deletion happens unless the client said QUIT); one
  running a command (a RETR being streamed) gets it once that is done.
  The listener (xmail.service.ListenerService.drain) waits for that before
  the core stops.  Over TLS the close does not wait for the client's
  close_notify (as IMAP's), so a drained session leaves at once.
"""

from __future__ import annotations

from typing import Any

from twisted.internet import defer, protocol, threads
from twisted.internet.interfaces import IPushProducer
from twisted.logger import Logger
from twisted.protocols.policies import TimeoutMixin
from twisted.python.failure import Failure
from zope.interface import implementer

from xmail import metrics
from xmail.context import ServerContext
from xmail.limits import LOGIN, CommandDeadline
from xmail.message.dotstuff import MultilineEncoder
from xmail.protocols.pop3.maildrop import IMaildropLocks, locks_for
from xmail.protocols.pop3.parser import NEED_DATA, CommandParser
from xmail.protocols.pop3.session import POP3Session, State
from xmail.tls import close_notify_without_waiting

CHUNK_SIZE = 64 * 1024
# Messages up to this size are read in one go on the reactor thread and sent
# with their status line in one write: a read of a small file from the page
# cache costs less than a thread hand-off.  Larger ones stream in chunks.
SMALL_MESSAGE = 256 * 1024
# Streamed files above this size are read in a thread.
THREAD_READ_THRESHOLD = 1024 * 1024
MAX_PENDING_INPUT = 64 * 1024


class MessageSender:
    """Streams one message file through a MultilineEncoder, a chunk at a
    time, only while the connection is not paused for writing."""

    def __init__(self, connection: POP3ServerProtocol, fileobj: Any, encoder: MultilineEncoder, *,
                 threaded: bool):
        self._connection = connection
        self._file = fileobj
        self._encoder = encoder
        self._threaded = threaded
        self._reading = False  # a threaded read is in flight
        self.finished = False
        self.done: defer.Deferred = defer.Deferred()

    def pump(self) -> None:
        connection = self._connection
        while not connection.write_paused and not self.finished and not self._reading:
            if self._threaded:
                self._reading = True
                reactor = connection.factory.ctx.reactor
                d = threads.deferToThreadPool(reactor, reactor.getThreadPool(), self._file.read, CHUNK_SIZE)
                d.addCallbacks(self._read_done, self._read_failed)
                return
            try:
                chunk = self._file.read(CHUNK_SIZE)
            except OSError:
                self._read_failed(Failure())
                return
            self._send(chunk)

    def stop(self) -> None:
        """The connection is gone: nothing more to send, nothing to report."""
        if not self.finished:
            self._finish(None)

    def _read_done(self, chunk: bytes) -> None:
        self._reading = False
        if not self.finished:
            self._send(chunk)
            self.pump()

    def _read_failed(self, failure: Any) -> None:
        self._reading = False
        if not self.finished:
            self._finish(failure)

    def _send(self, chunk: bytes) -> None:
        encoder = self._encoder
        if chunk and not encoder.done:
            out = encoder.feed(chunk)
            if out:
                self._connection.write(out)
            return
        self._connection.write(encoder.finish())
        self._finish(None)

    def _finish(self, failure: Any) -> None:
        self.finished = True
        try:
            self._file.close()
        except OSError:
            pass
        if failure is None:
            self.done.callback(None)
        else:
            self.done.errback(failure)


@implementer(IPushProducer)
class POP3ServerProtocol(protocol.Protocol, TimeoutMixin):
    """One POP3 connection; implements session.SessionIO.

    The protocol is the connection's write producer for its whole life: when
    the transport's buffer fills it stops taking commands and stops reading
    message files, and goes on when the client has caught up."""

    _log = Logger()
    factory: POP3Factory

    def __init__(self) -> None:
        self.parser = CommandParser()
        self.session: POP3Session | None = None
        self.write_paused = False
        self._busy: defer.Deferred | None = None  # the command being waited for
        self._sender: MessageSender | None = None
        self._processing = False
        self._reading_paused = False
        self._closed = False
        self.deadline: CommandDeadline | None = None
        self._login_overdue = False  # login_timeout passed while a command ran
        self._shutdown_pending = False  # SIGTERM: close once the command is done

    # -- Protocol --------------------------------------------------------------
    def connectionMade(self) -> None:
        ctx = self.factory.ctx
        self.callLater = ctx.reactor.callLater  # TimeoutMixin, injectable clock
        peer = self.transport.getPeer()
        client_ip = getattr(peer, "host", "")
        self.session = POP3Session(ctx, self, client_ip=client_ip, secure=self.factory.implicit_tls,
                                   locks=self.factory.locks)
        limits = ctx.settings.limits
        self.deadline = CommandDeadline(ctx.reactor, command_timeout=limits.command_timeout,
                                        login_timeout=limits.login_timeout,
                                        on_expired=self._deadline_passed)
        self.factory.sessions.add(self)
        self.transport.registerProducer(self, True)
        self.transport.write(self.session.greeting())
        self.setTimeout(ctx.settings.limits.pop3_idle_timeout or None)

    def dataReceived(self, data: bytes) -> None:
        if self._closed:
            return
        self.resetTimeout()
        if self.deadline is not None:
            self.deadline.received(len(data))
        self.parser.receive_data(data)
        self._process()

    def connectionLost(self, reason: Any = None) -> None:
        self._closed = True
        self.setTimeout(None)
        if self.deadline is not None:
            self.deadline.stop()
        self.factory.sessions.discard(self)
        if self._sender is not None:
            self._sender.stop()
        if self.session is not None:
            self.session.connection_lost()

    def timeoutConnection(self) -> None:
        # RFC 1939 §3: an autologout timer closes without entering UPDATE.
        self.transport.write(b"-ERR autologout: idle for too long\r\n")
        self.close()

    # -- deadlines and drain -------------------------------------------------------
    def _deadline_passed(self, kind: str) -> None:
        if self._closed or self.session is None:
            return
        if kind == LOGIN:
            if self.session.state is not State.AUTHORIZATION:
                return
            if self._busy is not None:
                self._login_overdue = True  # a login being checked: judge it first
                return
            # RFC 2449 §8.1.2 / RFC 3206 §4: [SYS/TEMP], a temporary problem.
            self.transport.write(b"-ERR [SYS/TEMP] login took too long\r\n")
        else:
            self.transport.write(b"-ERR [SYS/TEMP] command took too long to arrive\r\n")
        self.close()

    def _update_deadline(self) -> None:
        session, deadline = self.session, self.deadline
        if session is None or deadline is None or self._closed:
            return
        if session.state is not State.AUTHORIZATION:
            deadline.logged_in()
        # The clock runs only while the client owes the rest of a command.
        if self._busy is not None or self.write_paused or self.parser.idle:
            deadline.idle()
        else:
            deadline.pending()

    def shutdown(self) -> None:
        """SIGTERM drain: close now when between commands, else once the
        running command is done; never through UPDATE (RFC 1939 §6)."""
        if self._closed:
            return
        if self._busy is not None:
            self._shutdown_pending = True
            return
        self.transport.write(b"-ERR [SYS/TEMP] server shutting down\r\n")
        self.close()

    # -- IPushProducer (the transport's write buffer) ------------------------------
    def pauseProducing(self) -> None:
        self.write_paused = True

    def resumeProducing(self) -> None:
        self.write_paused = False
        if self._closed:
            return
        self.resetTimeout()  # the client is taking data: not idle
        if self._sender is not None:
            self._sender.pump()
        else:
            self._process()

    def stopProducing(self) -> None:
        if self._sender is not None:
            self._sender.stop()

    # -- command loop ----------------------------------------------------------
    def _process(self) -> None:
        if self._processing:
            return
        self._processing = True
        try:
            session = self.session
            assert session is not None
            while (self._busy is None and not self.write_paused and not self._closed
                   and session.state not in (State.UPDATE, State.CLOSED)):
                event = self.parser.next_event()
                if event is NEED_DATA:
                    break
                started = metrics.clock()
                result = metrics.track("pop3", getattr(event, "keyword", "BAD"),
                                       session.handle(event), started)  # type: ignore[arg-type]
                if isinstance(result, defer.Deferred):
                    self._busy = result
                    result.addBoth(self._command_done)
        finally:
            self._processing = False
        self._read_back_pressure()
        self._update_deadline()

    def _command_done(self, result: Any) -> None:
        self._busy = None
        if isinstance(result, Failure):
            self._log.failure("POP3 command failed", result)
            self.close()
            return
        session = self.session
        in_authorization = session is not None and session.state is State.AUTHORIZATION
        if (self._shutdown_pending or (self._login_overdue and in_authorization)) and not self._closed:
            reason = b"server shutting down" if self._shutdown_pending else b"login took too long"
            self.transport.write(b"-ERR [SYS/TEMP] " + reason + b"\r\n")
            self.close()
            return
        if not self._processing:
            self._process()

    def _read_back_pressure(self) -> None:
        if self._closed:
            return
        waiting = self._busy is not None or self.write_paused
        want_pause = waiting and self.parser.buffered > MAX_PENDING_INPUT
        if want_pause and not self._reading_paused:
            self._reading_paused = True
            self.transport.pauseProducing()
        elif not want_pause and self._reading_paused:
            self._reading_paused = False
            self.transport.resumeProducing()

    # -- SessionIO ---------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if not self._closed:
            self.transport.write(data)

    def send_message(self, status: bytes, fileobj: Any, size: int,
                     encoder: MultilineEncoder) -> defer.Deferred | None:
        if self._closed:
            fileobj.close()
            return None
        prefix = b""
        if size <= SMALL_MESSAGE:
            try:
                data = fileobj.read(SMALL_MESSAGE + 1)
            except OSError:
                fileobj.close()
                raise
            if len(data) <= SMALL_MESSAGE:
                fileobj.close()
                self.transport.write(status + encoder.feed(data) + encoder.finish())
                return None
            prefix = encoder.feed(data)  # larger than indexed: stream the rest
        self.transport.write(status + prefix)
        sender = self._sender = MessageSender(self, fileobj, encoder,
                                              threaded=size > THREAD_READ_THRESHOLD)
        sender.done.addBoth(self._sent)
        sender.pump()
        return sender.done

    def _sent(self, result: Any) -> Any:
        self._sender = None
        return result

    def start_tls(self) -> None:
        # RFC 2595 §4, cf. RFC 3207 §4.2 (STARTTLS command injection): what the
        # client pipelined after STLS came in plaintext and is dropped.
        self.parser.discard_buffer()
        self.transport.startTLS(self.factory.ctx.tls)

    def expect_sasl_response(self) -> None:
        self.parser.expect_sasl_response()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self.setTimeout(None)
            if self.deadline is not None:
                self.deadline.stop()
            # A registered producer would keep the connection open.
            self.transport.unregisterProducer()
            if self.session is not None and self.session.secure:
                close_notify_without_waiting(self.transport)
            self.transport.loseConnection()


class POP3Factory(protocol.Factory):
    """Built once per listener by xmail.service (pop3 and pop3s)."""

    protocol = POP3ServerProtocol

    def __init__(self, ctx: ServerContext, *, implicit_tls: bool, **kwargs: Any):
        self.ctx = ctx
        self.implicit_tls = implicit_tls
        self._locks: IMaildropLocks | None = None
        self.sessions: set[POP3ServerProtocol] = set()

    def doStop(self) -> None:
        """The last listening port closed (SIGTERM): every session ends once
        its current command is done (as SMTP's 421)."""
        super().doStop()
        for proto in list(self.sessions):
            proto.shutdown()

    @property
    def locks(self) -> IMaildropLocks:
        # Looked up at connection time: the data directory is final by then,
        # and pop3 and pop3s share one table.
        if self._locks is None:
            self._locks = locks_for(self.ctx.settings.data_dir)
        return self._locks
