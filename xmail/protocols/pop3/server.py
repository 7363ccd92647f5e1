# -*- test-case-name: tests.protocols.test_pop3_server -*-
"""The POP3 Twisted Protocol: thin glue between the socket, the sans-IO
parser and encoder, and the session state machine.  The command loop,
read back-pressure, deadlines and drain below are the shared
xmail.protocols.commandloop's; this module gives it POP3's hooks and adds
message streaming.

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
from twisted.python.failure import Failure

from xmail.context import ServerContext
from xmail.message.dotstuff import MultilineEncoder
from xmail.protocols.commandloop import CommandLoopProtocol
from xmail.protocols.pop3.maildrop import IMaildropLocks, locks_for
from xmail.protocols.pop3.parser import NEED_DATA, CommandParser
from xmail.protocols.pop3.session import POP3Session, State

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


class POP3ServerProtocol(CommandLoopProtocol):
    """One POP3 connection; implements session.SessionIO.

    The command loop, back-pressure, deadlines and drain are
    xmail.protocols.commandloop's; what is POP3's own is streaming a message
    (RETR/TOP): while the client does not read, no further chunk of the
    file is read either."""

    factory: POP3Factory

    metrics_label = "pop3"
    log_label = "POP3"
    event_name = "keyword"
    need_data = NEED_DATA
    login_state = State.AUTHORIZATION
    # RFC 1939 §6: after QUIT (UPDATE, then CLOSED) no command is taken.
    done_states = frozenset({State.UPDATE, State.CLOSED})
    # RFC 1939 §3: an autologout timer closes without entering UPDATE.
    IDLE_BYE = b"-ERR autologout: idle for too long\r\n"
    # RFC 2449 §8.1.2 / RFC 3206 §4: [SYS/TEMP], a temporary problem.
    COMMAND_OVERDUE_BYE = b"-ERR [SYS/TEMP] command took too long to arrive\r\n"
    LOGIN_OVERDUE_BYE = b"-ERR [SYS/TEMP] login took too long\r\n"
    # SIGTERM drain: closed without entering UPDATE (RFC 1939 §6).
    SHUTDOWN_BYE = b"-ERR [SYS/TEMP] server shutting down\r\n"
    max_pending_input = MAX_PENDING_INPUT

    def __init__(self) -> None:
        super().__init__(CommandParser())
        self._sender: MessageSender | None = None

    # -- the command loop's hooks --------------------------------------------------
    def make_session(self, client_ip: str) -> POP3Session:
        return POP3Session(self.factory.ctx, self, client_ip=client_ip, secure=self.factory.implicit_tls,
                           locks=self.factory.locks)

    def idle_timeout(self) -> float | None:
        # RFC 1939 §3: an autologout timer of at least 10 minutes.
        return self.factory.ctx.settings.limits.pop3_idle_timeout or None

    def forget(self) -> None:
        super().forget()
        if self._sender is not None:
            self._sender.stop()

    def resume_output(self) -> None:
        # A message being streamed goes on first; its end takes the next command.
        if self._sender is not None:
            self._sender.pump()
        else:
            self._process()

    def stopProducing(self) -> None:
        if self._sender is not None:
            self._sender.stop()

    # -- SessionIO ---------------------------------------------------------------
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
