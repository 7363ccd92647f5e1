# -*- test-case-name: tests.protocols.test_smtp_session -*-
"""The SMTP state machine: parser events in, replies out, one at a time.

`SMTPSession.handle(event)` returns None when it is done with the event, or
a Deferred while an asynchronous check or the delivery runs; the Protocol
(server.py) stops feeding events and pauses the transport until it fires,
so pipelined commands (RFC 2920) are processed strictly in order and their
replies come out in order.  Everything outside — directory, store, queue,
portal, TLS, the socket — is reached through the `backend` and `io`
objects, so the state machine runs under unit tests without a reactor.
"""

from __future__ import annotations

import email.utils
import enum
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from xmail import metrics
from xmail.auth import sasl
from xmail.auth.interfaces import LoginUnavailable
from xmail.protocols.skeleton import (
    BadSyntax,
    CommandTable,
    Denied,
    Refusal,
    ServerFault,
    UserError,
    gate,
    settle,
)
from xmail.protocols.smtp import replies
from xmail.protocols.smtp.grammar import (
    GrammarError,
    decode_xtext,
    parse_hello_domain,
    parse_path_argument,
    split_command,
)
from xmail.protocols.smtp.parser import (
    BodyData,
    ChunkEnd,
    CommandLine,
    DataEnd,
    Event,
    LineTooLong,
    SMTPParser,
)
from xmail.protocols.smtp.replies import Reply

MX, SUBMISSION = "mx", "submission"

# RFC 5321 §4.5.3.1.4: 512 octets; MAIL/RCPT grow with their parameters
# (RFC 1869 §4.1.2, RFC 1870: +26, RFC 3461: ORCPT/ENVID); AUTH lines carry
# SASL data (RFC 4954 §4: 12288).
COMMAND_LINE_LIMIT = 512
ENVELOPE_LINE_LIMIT = 2048
AUTH_LINE_LIMIT = 12288
MAX_ERRORS = 20  # error replies per session before 421 (Postfix smtpd_hard_error_limit)
MAX_ENVID = 100  # RFC 3461 §4.4


class Tx(enum.Enum):
    """The mail transaction (RFC 5321 §3.3, RFC 3030 §2): one explicit state
    instead of "is there an envelope / a spool / a failed chunk"."""

    IDLE = "idle"  # no MAIL yet, or after RSET / EHLO / a finished message
    MAIL = "mail"  # MAIL accepted, no recipient accepted yet
    RCPT = "rcpt"  # at least one recipient accepted
    DATA = "data"  # 354 sent, the body is arriving
    BDAT = "bdat"  # BDAT chunks are arriving into the spool
    BDAT_FAILED = "bdat failed"  # a chunk was refused: the rest are, until LAST or RSET


ANY_TX = frozenset(Tx)
IN_ENVELOPE = frozenset({Tx.MAIL, Tx.RCPT})

# The one SMTP command table (xmail/protocols/skeleton.py); handlers are the
# `do_*` methods of SMTPSession, registered with `@COMMANDS.command(...)`.
# BDAT is gated on hello only: its chunk must be read even when refused
# (RFC 3030 §2), so its transaction checks run when the chunk has arrived.
COMMANDS: CommandTable[Callable[..., Any]] = CommandTable("smtp", line_limit=COMMAND_LINE_LIMIT)
command = COMMANDS.command


@dataclass
class Recipient:
    address: str  # as given in RCPT TO
    user: str | None  # canonical local user, None for a remote recipient
    notify: tuple[str, ...] = ()
    orcpt: str | None = None


@dataclass
class Envelope:
    mail_from: str
    size: int | None = None
    body: str = "7BIT"
    smtputf8: bool = False
    ret: str | None = None
    envid: str | None = None
    recipients: list[Recipient] = field(default_factory=list)
    # filled while the content arrives
    message_id: str | None = None
    header_error: Reply | None = None
    headers: bytes | None = None


@dataclass
class SessionInfo:
    """What the backend needs to know about the client for one delivery."""

    mode: str
    client_ip: str
    helo: str
    esmtp: bool
    secure: bool
    user: str | None  # authenticated user
    transaction_id: str


class SMTPSession:
    _log = Logger()

    def __init__(self, backend: Any, io: Any, *, mode: str, client_ip: str, secure: bool,
                 tls_available: bool):
        self.backend = backend
        self.io = io  # write(bytes), start_tls(), close()
        self.mode = mode
        self.client_ip = client_ip
        self.secure = secure
        self.tls_available = tls_available
        self.parser = SMTPParser()
        self.hostname = backend.hostname
        self.closed = False
        self.errors = 0
        # The login (xmail.auth.login.Lease): this session owns it, and
        # releasing it is the only way its per-user slot is given back.
        self.lease: Any = None
        self._reset_all()

    # -- state -----------------------------------------------------------------
    @property
    def user(self) -> str | None:
        """The authenticated user (canonical address), None before AUTH."""
        return self.lease.address if self.lease is not None else None

    def _reset_all(self) -> None:
        # RFC 3207 §4.2: after STARTTLS nothing learnt before it survives,
        # the login included: its lease goes back (issue 14: it used to
        # keep the user's session slot until the server restarted).
        self.helo: str | None = None
        self.esmtp = False
        self.release_login()
        self._sasl: sasl.Exchange | None = None
        self._reset_transaction()

    def release_login(self) -> None:
        """End the login, if any (STARTTLS, connection lost); idempotent."""
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.release()

    def _reset_transaction(self) -> None:
        self.tx = Tx.IDLE
        self.envelope: Envelope | None = None
        self.spool: Any = None
        self._bdat_failed: Reply | None = None  # the reply while tx is BDAT_FAILED
        self._chunk_reply: Reply | None = None
        self._chunk_last = False

    @property
    def auth_offered(self) -> bool:
        """RFC 4954 §4 / Postfix smtpd_tls_auth_only: AUTH only on submission,
        and only over TLS or from a loopback client."""
        return self.mode == SUBMISSION and (self.secure or self.backend.is_loopback(self.client_ip))

    @property
    def tls_or_exempt(self) -> bool:
        """The gate's `tls` for the needs_tls commands (AUTH): TLS is active,
        or this session need not have it: a loopback client, or a listener
        that offers no AUTH at all (port 25, where AUTH answers 503)."""
        return self.secure or self.mode != SUBMISSION or self.backend.is_loopback(self.client_ip)

    def info(self) -> SessionInfo:
        return SessionInfo(self.mode, self.client_ip, self.helo or "", self.esmtp, self.secure,
                           self.user, self.spool.name if self.spool is not None else "")

    # -- output ------------------------------------------------------------------
    def greeting(self) -> None:
        self._send(replies.GREETING.format(self.hostname))

    def reply(self, reply: Reply, lines: list[str] | None = None) -> None:
        """Send a reply and count errors (then 421 and close, like Postfix)."""
        self._send(reply, lines)
        if reply.is_error and reply.code != 421:
            self.errors += 1
            if self.errors >= MAX_ERRORS:
                self.close(replies.TOO_MANY_ERRORS.format(self.hostname))

    def _send(self, reply: Reply, lines: list[str] | None = None) -> None:
        if not self.closed:
            self.io.write(reply.to_bytes(lines))

    def close(self, reply: Reply | None = None) -> None:
        if self.closed:
            return
        if reply is not None:
            self._send(reply)
        self.closed = True
        self.discard_transaction()
        self.io.close()

    def discard_transaction(self) -> None:
        if self.spool is not None:
            self.spool.discard()
        self._reset_transaction()

    # -- events --------------------------------------------------------------------
    def handle(self, event: Event) -> Any:
        if self.closed:
            return None
        if isinstance(event, CommandLine):
            if self._sasl is not None:
                return self._sasl_response(event.line)
            return self._command(event.line)
        if isinstance(event, LineTooLong):
            self._sasl = None
            self.reply(replies.LINE_TOO_LONG)
            return None
        if isinstance(event, BodyData):
            if self.spool is not None:
                self.spool.write(event.data)
            return None
        if isinstance(event, DataEnd):
            return self._data_end(event)
        if isinstance(event, ChunkEnd):
            return self._chunk_end(event)
        raise TypeError(f"unknown event {event!r}")  # pragma: no cover

    def _command(self, line: bytes) -> Any:
        started = metrics.clock()
        command = split_command(line)
        checked = gate(COMMANDS, command.verb, state=self.tx, line_length=len(line) + 2,
                       hello=self.helo is not None, tls=self.tls_or_exempt,
                       authenticated=self.mode != SUBMISSION or self.user is not None)
        if isinstance(checked, Denied):
            self.reply(self._refused(checked))
            return None
        # Handlers are coroutines; one that does not wait completes here,
        # synchronously, so pipelined replies keep their order (RFC 2920).
        done = defer.Deferred.fromCoroutine(checked.handler(self, command.argument))
        done.addErrback(self._deferred_error, command.verb)
        return metrics.track("smtp", command.verb, None if done.called else done, started)

    # -- errors to replies: the one place -------------------------------------------------
    def _refused(self, denied: Denied) -> Reply:
        """The gate's refusal as an SMTP reply (RFC 5321 §4.2.4, §4.3.2)."""
        refusal = denied.refusal
        if refusal is Refusal.LINE_TOO_LONG:
            return replies.LINE_TOO_LONG  # RFC 5321 §4.5.3.1.4
        if refusal is Refusal.UNKNOWN:
            return replies.UNKNOWN_COMMAND
        if refusal is Refusal.NEEDS_HELLO:
            return replies.SEND_HELLO_FIRST
        if refusal is Refusal.NEEDS_TLS:
            return replies.AUTH_NEEDS_TLS  # RFC 4954 §6: 538 5.7.11
        if refusal is Refusal.NEEDS_AUTH:
            # RFC 4954 §6 530 5.7.0; RFC 3207 §4: TLS first when it is required.
            if not self.secure and not self.backend.is_loopback(self.client_ip):
                return replies.MUST_ISSUE_STARTTLS
            return replies.AUTH_REQUIRED
        if refusal is Refusal.WRONG_STATE:
            # RFC 5321 §4.1.4 (MAIL twice; RCPT/DATA before MAIL), RFC 2920
            # §3.1 (DATA after only failed RCPTs), RFC 3030 §3 (DATA or RCPT
            # among BDAT chunks), RFC 4954 §4 (AUTH in a transaction).
            if denied.name == "MAIL" and self.tx is not Tx.IDLE:
                return replies.NESTED_MAIL
            if self.tx is Tx.IDLE:
                return replies.NEED_MAIL
            if denied.name == "DATA" and self.tx is Tx.MAIL:
                return replies.NO_VALID_RECIPIENTS
        return replies.BAD_SEQUENCE

    def _error_reply(self, failure: Failure, verb: str) -> Reply:
        """A handler's exception as an SMTP reply: UserError carries its
        catalog reply, BadSyntax is 501 5.5.4, anything else a server fault
        (logged with its traceback, 451 4.3.0: the client retries; RFC 5321
        §4.2.5)."""
        error = failure.value
        if isinstance(error, UserError):
            reply = error.code if isinstance(error.code, Reply) else replies.SYNTAX_ERROR
            return reply.with_text(error.text) if error.text else reply
        if isinstance(error, BadSyntax):
            return replies.SYNTAX_ERROR
        what = error.text if isinstance(error, ServerFault) else "unexpected error"
        self._log.failure("SMTP {verb} failed: {what}", failure, verb=verb, what=what)
        self.discard_transaction()
        return replies.TEMPORARY_FAILURE

    def _deferred_error(self, failure: Failure, verb: str) -> None:
        self.reply(self._error_reply(failure, verb))

    # -- commands --------------------------------------------------------------------
    @command("EHLO")
    async def do_ehlo(self, argument: str) -> None:
        self._hello(argument, esmtp=True)

    @command("HELO")
    async def do_helo(self, argument: str) -> None:
        self._hello(argument, esmtp=False)

    def _hello(self, argument: str, esmtp: bool) -> None:
        try:
            helo = parse_hello_domain(argument)
        except GrammarError:
            self.reply(replies.HELO_REQUIRED.format("EHLO" if esmtp else "HELO"))
            return
        # RFC 5321 §4.1.4: EHLO in a transaction resets it.
        self.discard_transaction()
        self.helo, self.esmtp = helo, esmtp
        if not esmtp:
            self._send(replies.HELO_OK.format(self.hostname))
            return
        lines = [self.hostname, "PIPELINING", f"SIZE {self.backend.max_message_size}", "8BITMIME",
                 "SMTPUTF8", "ENHANCEDSTATUSCODES"]
        if self.tls_available and not self.secure:
            lines.append("STARTTLS")
        if self.auth_offered and self.user is None:
            lines.append("AUTH PLAIN LOGIN")
        lines += ["CHUNKING", "DSN"]
        self._send(replies.HELO_OK, lines)

    @command("NOOP")
    async def do_noop(self, argument: str) -> None:
        self.reply(replies.OK)

    @command("RSET")
    async def do_rset(self, argument: str) -> None:
        self.discard_transaction()
        self.reply(replies.RESET_OK)

    @command("QUIT")
    async def do_quit(self, argument: str) -> None:
        self.close(replies.CLOSING)

    @command("HELP")
    async def do_help(self, argument: str) -> None:
        self.reply(replies.HELP)

    @command("VRFY")
    async def do_vrfy(self, argument: str) -> None:
        # RFC 5321 §3.5.3: 252 without disclosing which users exist.
        self.reply(replies.CANNOT_VRFY)

    @command("EXPN")
    async def do_expn(self, argument: str) -> None:
        self.reply(replies.NOT_IMPLEMENTED)

    @command("STARTTLS", needs_hello=True)
    async def do_starttls(self, argument: str) -> None:
        if argument.strip():
            self.reply(replies.SYNTAX_ERROR)
            return
        if self.secure:
            self.reply(replies.ALREADY_TLS)
            return
        if not self.tls_available:
            self.reply(replies.TLS_UNAVAILABLE)
            return
        self._send(replies.READY_FOR_TLS)
        # RFC 3207 §4.2: plaintext already read after the STARTTLS line was
        # not protected by TLS; it must not be executed (CVE-2011-0411).
        self.parser.discard_buffer()
        self.discard_transaction()
        self._reset_all()
        self.secure = True
        self.io.start_tls()

    # -- AUTH (RFC 4954) -------------------------------------------------------------
    # needs_tls: RFC 4954 §4 / Postfix smtpd_tls_auth_only, see auth_offered.
    @command("AUTH", frozenset({Tx.IDLE}), line_limit=AUTH_LINE_LIMIT, needs_hello=True, needs_tls=True)
    async def do_auth(self, argument: str) -> None:
        if self.mode != SUBMISSION:
            self.reply(replies.AUTH_NOT_ENABLED)
            return None
        if self.user is not None:
            self.reply(replies.ALREADY_AUTHENTICATED)
            return None
        mechanism, _, initial = argument.strip().partition(" ")
        exchange = sasl.exchange(mechanism)
        if exchange is None:
            self.reply(replies.AUTH_MECHANISM_UNKNOWN)
            return None
        self._sasl = exchange
        initial = initial.strip()
        if not initial:
            await settle(self._sasl_step(None))
            return None
        try:
            # RFC 4954 §4: "=" is an empty initial response.
            response = sasl.decode_initial(initial)
        except sasl.SaslError:
            self._sasl = None
            self.reply(replies.AUTH_BAD_RESPONSE)
            return None
        await settle(self._sasl_step(response))
        return None

    def _sasl_response(self, line: bytes) -> Any:
        if len(line) + 2 > AUTH_LINE_LIMIT:
            self._sasl = None
            self.reply(replies.LINE_TOO_LONG)
            return None
        try:
            response = sasl.decode_response(line)
        except sasl.SaslCancelled:
            self._sasl = None
            self.reply(replies.AUTH_CANCELLED)
            return None
        except sasl.SaslError:
            self._sasl = None
            self.reply(replies.AUTH_BAD_RESPONSE)
            return None
        return self._sasl_step(response)

    def _sasl_step(self, response: bytes | None) -> Any:
        exchange = self._sasl
        assert exchange is not None
        try:
            outcome = exchange.step(response)
        except sasl.SaslError:
            self._sasl = None
            self.reply(replies.AUTH_BAD_RESPONSE)
            return None
        if isinstance(outcome, bytes):
            self._send(replies.AUTH_CHALLENGE.format(sasl.encode_challenge(outcome).decode("ascii")))
            return None
        self._sasl = None
        d = self.backend.authenticate(outcome, self.client_ip, exchange.name)
        d.addCallbacks(self._authenticated, self._auth_failed)
        return d

    def _authenticated(self, lease: Any) -> None:
        if self.closed:
            # The client went away while the password was checked.
            lease.release()
            return
        self.lease = lease
        self.reply(replies.AUTH_OK)

    def _auth_failed(self, failure: Any) -> None:
        # RFC 4954 §6: 535 5.7.8 for refused credentials, 454 4.7.0 for a
        # temporary failure (throttled, too many sessions, a busy verifier).
        if failure.check(UnauthorizedLogin, LoginFailed):
            reply = replies.AUTH_FAILED
        elif failure.check(LoginUnavailable):
            reply = replies.AUTH_TEMPORARY_FAILURE
        else:
            self._log.failure("authentication error", failure)
            reply = replies.AUTH_TEMPORARY_FAILURE
        self.reply(reply)

    # -- envelope --------------------------------------------------------------------
    @command("MAIL", frozenset({Tx.IDLE}), line_limit=ENVELOPE_LINE_LIMIT, needs_hello=True,
             needs_auth=True)
    async def do_mail(self, argument: str) -> None:
        try:
            path = parse_path_argument(argument, "FROM:", allow_null=True)
        except GrammarError as e:
            self.reply(replies.SYNTAX_ERROR if e.kind == "syntax" else replies.BAD_SENDER_SYNTAX)
            return None
        if path.params and not self.esmtp:
            self.reply(replies.PARAMETER_UNKNOWN.format(next(iter(path.params))))
            return None
        envelope = Envelope(path.address)
        for key, value in path.params.items():
            problem = self._mail_parameter(envelope, key, value)
            if problem is not None:
                self.reply(problem)
                return None
        if not envelope.mail_from.isascii() and not envelope.smtputf8:
            # RFC 6531 §3.4
            self.reply(replies.NON_ASCII_NEEDS_SMTPUTF8)
            return None
        if self.mode == SUBMISSION:
            assert self.user is not None
            if envelope.mail_from and not self.backend.may_send_as(self.user, envelope.mail_from):
                self.reply(replies.SENDER_NOT_OWNED.format(envelope.mail_from, self.user))
                return None
            limit = self.backend.send_limit_reached(self.user)
            if limit is not None:
                self.reply(replies.SEND_LIMIT_REACHED.format(limit))
                return None
        self.envelope = envelope
        self.tx = Tx.MAIL
        self.reply(replies.SENDER_OK)
        return None

    def _mail_parameter(self, envelope: Envelope, key: str, value: str | None) -> Reply | None:
        if key == "SIZE":
            # RFC 1870 §6.2: refuse early when the declared size is too big.
            if value is None or not value.isdigit() or len(value) > 20:
                return replies.SYNTAX_ERROR
            envelope.size = int(value)
            if envelope.size > self.backend.max_message_size:
                return replies.MESSAGE_TOO_BIG
        elif key == "BODY":
            body = (value or "").upper()
            if body not in ("7BIT", "8BITMIME"):  # BINARYMIME is not offered
                return replies.BODY_TYPE_UNSUPPORTED.format(value)
            envelope.body = body
        elif key == "SMTPUTF8":
            if value is not None:
                return replies.SYNTAX_ERROR
            envelope.smtputf8 = True
        elif key == "RET":
            ret = (value or "").upper()
            if ret not in ("FULL", "HDRS"):
                return replies.SYNTAX_ERROR
            envelope.ret = ret
        elif key == "ENVID":
            try:
                envid = decode_xtext(value or "")
            except GrammarError:
                return replies.SYNTAX_ERROR
            if not envid or len(value or "") > MAX_ENVID:
                return replies.SYNTAX_ERROR
            envelope.envid = envid
        elif key == "AUTH":
            pass  # RFC 4954 §5: accepted; we do not relay on the strength of it
        else:
            return replies.PARAMETER_UNKNOWN.format(key)
        return None

    @command("RCPT", IN_ENVELOPE, line_limit=ENVELOPE_LINE_LIMIT, needs_hello=True,
             needs_auth=True)
    async def do_rcpt(self, argument: str) -> None:
        envelope = self.envelope
        assert envelope is not None  # the gate: tx is MAIL or RCPT
        try:
            path = parse_path_argument(argument, "TO:", allow_null=False)
        except GrammarError as e:
            if e.kind == "address" and _is_postmaster(argument):
                path = None
            else:
                self.reply(replies.SYNTAX_ERROR if e.kind == "syntax" else replies.BAD_ADDRESS_SYNTAX)
                return None
        if path is None:
            # RFC 5321 §4.5.1: <postmaster> without a domain must be accepted.
            address, params = self.backend.postmaster, {}
        else:
            address, params = path.address, path.params
        if params and not self.esmtp:
            self.reply(replies.PARAMETER_UNKNOWN.format(next(iter(params))))
            return None
        recipient = Recipient(address, None)
        for key, value in params.items():
            problem = self._rcpt_parameter(recipient, key, value)
            if problem is not None:
                self.reply(problem)
                return None
        if not address.isascii() and not envelope.smtputf8:
            self.reply(replies.NON_ASCII_NEEDS_SMTPUTF8)
            return None
        if len(envelope.recipients) >= self.backend.max_recipients:
            # RFC 5321 §4.5.3.1.10
            self.reply(replies.TOO_MANY_RECIPIENTS)
            return None
        try:
            result = self.backend.check_recipient(address, self.info(), envelope)
        except Exception:
            result = defer.fail()
        if not isinstance(result, defer.Deferred):
            self._recipient_checked(result, envelope, recipient)
            return None
        result.addErrback(lambda f: (self._internal_error(f, "recipient check"), None))
        result.addCallback(self._recipient_checked, envelope, recipient)
        await result
        return None

    def _recipient_checked(self, result: tuple[Reply, str | None], envelope: Envelope,
                           recipient: Recipient) -> None:
        reply, user = result
        if not reply.is_error and envelope is self.envelope:
            recipient.user = user
            envelope.recipients.append(recipient)
            if self.tx is Tx.MAIL:
                self.tx = Tx.RCPT
        self.reply(reply)

    def _rcpt_parameter(self, recipient: Recipient, key: str, value: str | None) -> Reply | None:
        if key == "NOTIFY":
            # RFC 3461 §4.1
            items = tuple((value or "").upper().split(","))
            allowed = {"SUCCESS", "FAILURE", "DELAY"}
            if items != ("NEVER",) and not (set(items) <= allowed and len(set(items)) == len(items)):
                return replies.SYNTAX_ERROR
            recipient.notify = items
        elif key == "ORCPT":
            # RFC 3461 §4.2: addr-type ";" xtext
            addr_type, semi, text = (value or "").partition(";")
            if not semi or not addr_type:
                return replies.SYNTAX_ERROR
            try:
                recipient.orcpt = f"{addr_type};{decode_xtext(text)}"
            except GrammarError:
                return replies.SYNTAX_ERROR
        else:
            return replies.PARAMETER_UNKNOWN.format(key)
        return None

    # -- content ---------------------------------------------------------------------
    def _bdat_gate(self) -> Reply | None:
        """The gate's rules for the first BDAT chunk, applied once it has
        been read (RFC 3030 §2): the same replies as for DATA."""
        checked = gate(COMMANDS, "DATA", state=self.tx, hello=self.helo is not None,
                       authenticated=self.mode != SUBMISSION or self.user is not None)
        return self._refused(checked) if isinstance(checked, Denied) else None

    @command("DATA", frozenset({Tx.RCPT}), needs_hello=True, needs_auth=True)
    async def do_data(self, argument: str) -> None:
        if argument.strip():
            raise BadSyntax("DATA takes no argument")
        self._open_spool()
        self.tx = Tx.DATA
        self._send(replies.START_MAIL_INPUT)
        self.parser.start_data()

    def _open_spool(self) -> None:
        assert self.envelope is not None and self.tx is Tx.RCPT
        envelope = self.envelope
        self.spool = self.backend.new_spool(self.info(), envelope,
                                            lambda section: self._check_headers(envelope, section))

    def _check_headers(self, envelope: Envelope, section: bytes) -> bytes:
        try:
            section, envelope.message_id, envelope.header_error = self.backend.check_headers(
                self.info(), envelope, section)
        except Exception:
            self._log.failure("header check failed")
            envelope.header_error = replies.TEMPORARY_FAILURE
        envelope.headers = section
        return section

    def _data_end(self, event: DataEnd) -> Any:
        spool, envelope = self.spool, self.envelope
        if spool is None or envelope is None:  # pragma: no cover - parser only ends DATA we started
            return None
        if event.line_too_long:
            self.discard_transaction()
            self.reply(replies.LINE_TOO_LONG)
            return None
        return self._finish_message()

    @command("BDAT", needs_hello=True)
    async def do_bdat(self, argument: str) -> None:
        parts = argument.split()
        if not parts or len(parts) > 2 or not parts[0].isdigit() or len(parts[0]) > 20 or (
                len(parts) == 2 and parts[1].upper() != "LAST"):
            # The chunk size is unknown, so its octets will be read as
            # commands; the error limit ends such a session.
            self.reply(replies.SYNTAX_ERROR)
            return None
        size = int(parts[0])
        self._chunk_last = len(parts) == 2
        self._chunk_reply = None
        if self.tx is Tx.BDAT_FAILED:
            self._chunk_reply = self._bdat_failed
        elif self.tx is not Tx.BDAT:
            refused = self._bdat_gate()
            if refused is not None:
                self._chunk_reply = refused
            else:
                self._open_spool()
                self.tx = Tx.BDAT
        # RFC 3030 §2: the chunk is read even when it will be refused.
        self.parser.start_chunk(size)
        return None

    def _chunk_end(self, event: ChunkEnd) -> Any:
        if self._chunk_reply is not None:
            reply = self._chunk_reply
            if self._chunk_last or self.tx is Tx.IDLE:
                self.discard_transaction()
            self.reply(reply)
            return None
        spool = self.spool
        assert spool is not None
        if spool.too_big:
            if self._chunk_last:
                self.discard_transaction()
            else:
                spool.discard()
                self.tx, self._bdat_failed = Tx.BDAT_FAILED, replies.MESSAGE_TOO_BIG
            self.reply(replies.MESSAGE_TOO_BIG)
            return None
        if not self._chunk_last:
            self.reply(replies.CHUNK_OK.format(event.size))
            return None
        return self._finish_message()

    def _finish_message(self) -> Any:
        spool, envelope = self.spool, self.envelope
        assert spool is not None and envelope is not None
        spool.finish()
        if spool.too_big:
            self.discard_transaction()
            self.reply(replies.MESSAGE_TOO_BIG)
            return None
        if spool.header_overflow:
            self.discard_transaction()
            self.reply(replies.HEADER_TOO_BIG)
            return None
        if envelope.header_error is not None:
            reply = envelope.header_error
            self.discard_transaction()
            self.reply(reply)
            return None
        d = defer.maybeDeferred(self.backend.accept_message, self.info(), envelope, spool)
        d.addErrback(self._internal_error, "delivery")
        d.addCallback(self._message_done)
        return d

    def _message_done(self, reply: Reply) -> None:
        self.discard_transaction()
        self.reply(reply)

    def _internal_error(self, failure: Any, what: str) -> Reply:
        """A server fault: logged, answered with a temporary failure."""
        self._log.failure("SMTP {what} failed", failure, what=what)
        return replies.TEMPORARY_FAILURE


def _is_postmaster(argument: str) -> bool:
    rest = argument[3:].strip() if argument[:3].upper() == "TO:" else ""
    return rest.split(" ", 1)[0].lower() == "<postmaster>"


def add_missing_headers(section: bytes, hostname: str, *, date: bool, message_id: str | None) -> bytes:
    """Append Date / Message-ID fields to a header section (RFC 6409 §8.2, §8.3)."""
    extra = b""
    if date:
        extra += b"Date: " + email.utils.formatdate(localtime=True).encode() + b"\r\n"
    if message_id is not None:
        extra += b"Message-ID: " + message_id.encode() + b"\r\n"
    if not extra:
        return section
    if section.endswith(b"\r\n\r\n"):
        return section[:-2] + extra + b"\r\n"
    if section == b"\r\n":
        return extra + b"\r\n"
    if section and not section.endswith(b"\r\n"):
        section += b"\r\n"
    return section + extra
