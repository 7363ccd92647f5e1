# -*- test-case-name: tests.protocols.test_pop3_session -*-
"""The POP3 state machine: AUTHORIZATION -> TRANSACTION -> UPDATE (RFC 1939 §3).

One table (`COMMANDS`, a skeleton.CommandTable filled by the `@command`
decorators on the handlers) says which command is valid in which state and
how many arguments it takes; `POP3Session.handle` runs the shared gate
(xmail/protocols/skeleton.py) before any handler.  Handlers are coroutines,
`async def do_x(self, *args) -> None`, as SMTP's and IMAP's are; they write
replies through a `SessionIO` (the Twisted protocol in server.py, or a test
double).  `skeleton.start` runs each to its first wait: most never wait and
answer at once, with no Deferred made; one that waits (a login, the UPDATE
expunge, a streamed message) leaves a Deferred and the protocol reads no
further command until it fires, which keeps pipelined replies in order
(RFC 2449 §6.6).

Errors are answered in one place (`_error_reply`): a user error is
`-ERR [CODE] text`, a syntax error `-ERR text`, a server fault
`-ERR [SYS/TEMP] ...` plus a logged traceback; the session stays usable.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass
from typing import Any, Protocol

from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from xmail.auth import sasl
from xmail.auth.interfaces import AuthorizationFailed, LoginUnavailable
from xmail.auth.login import Lease, login
from xmail.message.dotstuff import MultilineEncoder
from xmail.protocols.pop3.maildrop import IMaildropLocks
from xmail.protocols.pop3.parser import BadLine, Command, SaslResponse
from xmail.protocols.skeleton import (
    BadSyntax,
    CommandTable,
    Denied,
    Refusal,
    ServerFault,
    gate,
    settle,
    start,
)
from xmail.protocols.skeleton import UserError as _UserError
from xmail.store.interfaces import NoSuchMessage, StoreError

_SASL_NAME = re.compile(r"[A-Z0-9_-]{1,20}")
IMPLEMENTATION = "xmail"
MAX_AUTH_FAILURES = 3  # then the connection is closed
MAX_BAD_COMMANDS = 10  # unknown/invalid commands before the connection is closed
SASL_MECHANISMS = sasl.MECHANISMS
# RFC 1939 §4: the maildrop is INBOX only (DESIGN.md "POP3 sees only this").
PLAINTEXT_REFUSED = "plaintext authentication disallowed on an unencrypted connection, use STLS"
MAILDROP_FOLDER = "INBOX"


class State(enum.Enum):
    AUTHORIZATION = "AUTHORIZATION"
    TRANSACTION = "TRANSACTION"
    UPDATE = "UPDATE"
    CLOSED = "CLOSED"


AUTH = frozenset({State.AUTHORIZATION})
TRANS = frozenset({State.TRANSACTION})
BOTH = AUTH | TRANS


class SessionIO(Protocol):
    """What the session needs from its connection."""

    def write(self, data: bytes) -> None: ...

    def send_message(self, status: bytes, fileobj: Any, size: int,
                     encoder: MultilineEncoder) -> defer.Deferred | None:
        """Write the status line, then the file through encoder (terminator
        included) with back-pressure; closes fileobj.  None when all is
        written already, else a Deferred that fires when it is.  An OSError
        raised here means nothing was written."""

    def start_tls(self) -> None:
        """Discard buffered input and start TLS (called after "+OK")."""

    def expect_sasl_response(self) -> None: ...

    def close(self) -> None: ...


class UserError(_UserError):
    """Answered as `-ERR [CODE] <text>`; the session goes on."""

    def __init__(self, text: str, code: str | None = None):
        super().__init__(code, text)

    def reply(self) -> bytes:
        return err(str(self), self.code)


def ok(text: str = "") -> bytes:
    return f"+OK {text}\r\n".encode() if text else b"+OK\r\n"


def err(text: str, code: str | None = None) -> bytes:
    # RFC 2449 §8: "-ERR [CODE] text"; codes: RFC 2449 §8.1.2 (IN-USE),
    # RFC 3206 (AUTH, SYS/TEMP, SYS/PERM).
    prefix = f"[{code}] " if code else ""
    return f"-ERR {prefix}{text}\r\n".encode()


def multiline(first: str, lines: list[str]) -> bytes:
    """A short multi-line reply built in memory (CAPA, LIST, UIDL)."""
    # RFC 1939 §3: none of these lines can begin with ".", so no stuffing.
    return ("+OK " + first + "\r\n" + "".join(line + "\r\n" for line in lines) + ".\r\n").encode()


@dataclass(slots=True)
class Maildrop:
    """The message list fixed at login (RFC 1939 §5): number n is entry n-1."""

    folder: Any  # IFolder
    uidvalidity: int
    uids: list[int]
    sizes: list[int]
    deleted: set[int]  # message numbers marked by DELE

    def visible(self) -> list[int]:
        return [n for n in range(1, len(self.uids) + 1) if n not in self.deleted]

    def uidl(self, number: int) -> str:
        # RFC 1939 §7 UIDL: 1-70 characters in 0x21-0x7E, unique and stable
        # for the life of the message.  The store keeps UIDVALIDITY and UIDs
        # across restarts and reindex, so the pair is such an id.
        return f"{self.uidvalidity}.{self.uids[number - 1]}"


# The one POP3 command table: keyword -> handler, the states it is valid in
# and its arity; the `do_*` methods below register themselves.
COMMANDS: CommandTable[Any] = CommandTable("pop3")
command = COMMANDS.command


class POP3Session:
    """One client's POP3 conversation."""

    _log = Logger()

    def __init__(self, ctx: Any, io: SessionIO, *, client_ip: str, secure: bool,
                 locks: IMaildropLocks):
        self.ctx = ctx
        self.io = io
        self.client_ip = client_ip
        self.secure = secure
        self.locks = locks
        self.state = State.AUTHORIZATION
        self.maildrop: Maildrop | None = None
        self.account: str | None = None
        # The login (xmail.auth.login.Lease), owned by this session: releasing
        # it is the only way the user's session slot is given back.
        self.lease: Lease | None = None
        self._user: str | None = None  # from USER, waiting for PASS
        self._sasl: sasl.Exchange | None = None
        self._auth_failures = 0
        self._bad_commands = 0
        # Fixed for the connection: the peer address and the setting.
        self._loopback_exempt = ctx.is_loopback(client_ip)

    # -- policy ------------------------------------------------------------
    @property
    def tls_available(self) -> bool:
        return not self.secure and self.ctx.tls is not None

    @property
    def plaintext_auth_allowed(self) -> bool:
        # RFC 2595 §2.3: clear-text logins can be refused until TLS is
        # active; we do, loopback clients excepted ([server] loopback_plaintext_auth).
        # The commands that carry a password (USER, PASS, AUTH) say
        # needs_tls in the table; the gate is given this as "TLS or exempt".
        return self.secure or self._loopback_exempt

    def greeting(self) -> bytes:
        return ok(f"{self.ctx.settings.server.hostname} xmail POP3 server ready")

    # -- dispatch ------------------------------------------------------------
    def handle(self, event: Command | SaslResponse | BadLine) -> defer.Deferred | None:
        """Answer one parser event; a Deferred means "wait before the next".

        The one coroutine path: an SASL response or the gated command's
        handler runs through `skeleton.start`; whatever it raises, now or
        after a wait, is answered by `_error_reply`."""
        if self.state in (State.UPDATE, State.CLOSED):
            return None  # RFC 1939 §6: nothing after QUIT is read
        try:
            if self._sasl is not None:
                waiting = start(self._sasl_step(event))
            elif isinstance(event, BadLine):
                self._bad(err(event.reason))
                return None
            elif isinstance(event, SaslResponse):  # pragma: no cover - parser guards this
                self._bad(err("unexpected continuation"))
                return None
            else:
                checked = gate(COMMANDS, event.keyword, state=self.state, nargs=len(event.args),
                               tls=self.plaintext_auth_allowed)
                if isinstance(checked, Denied):
                    self._refused(checked)
                    return None
                waiting = start(checked.handler(self, *event.args))
        except Exception as e:
            self._error_reply(e)
            return None
        if waiting is None:
            return None
        return waiting.addErrback(self._deferred_error)

    def _refused(self, denied: Denied) -> None:
        """The gate's refusal on the wire.  TLS first is the password rule
        (RFC 2595 §2.3), answered as the user error it always was: RFC 3206
        §5 [AUTH], not counted as a bad command."""
        if denied.refusal is Refusal.NEEDS_TLS:
            self.io.write(err(PLAINTEXT_REFUSED, "AUTH"))
            return
        self._bad(err(self._refusal_text(denied)))

    def _refusal_text(self, denied: Denied) -> str:
        if denied.refusal is Refusal.UNKNOWN:
            return "unknown command"
        if denied.refusal is Refusal.WRONG_ARITY:
            return f"wrong number of arguments for {denied.name}"
        return f"{denied.name} not valid in the {self.state.value} state"

    def _error_reply(self, error: BaseException, failure: Failure | None = None) -> None:
        """The one place where a handler's exception becomes `-ERR`
        (RFC 2449 §8 response codes, RFC 3206 SYS/TEMP).  Called from an
        except clause, or with the `failure` of a handler that waited, so
        a fault is logged with its traceback.  Nothing is written once the
        session has ended (the connection is gone, or QUIT said goodbye)."""
        if self.state in (State.UPDATE, State.CLOSED):
            if not isinstance(error, (_UserError, BadSyntax)):
                self._log.failure("POP3 command failed for {client}", failure, client=self.client_ip)
            return
        if isinstance(error, _UserError):
            self.io.write(err(error.text, error.code))
        elif isinstance(error, BadSyntax):
            self.io.write(err(error.text))
        else:
            self._fault(error.text if isinstance(error, ServerFault) else "command failed", failure)

    def _bad(self, reply: bytes) -> None:
        self.io.write(reply)
        self._bad_commands += 1
        if self._bad_commands >= MAX_BAD_COMMANDS:
            self.io.write(err("too many bad commands, closing"))
            self._close()

    def _fault(self, what: str, failure: Failure | None = None) -> None:
        self._log.failure("POP3 {what} for {client}", failure, what=what, client=self.client_ip)
        self.io.write(err("internal server error, try again later", "SYS/TEMP"))

    def _deferred_error(self, failure: Failure) -> None:
        self._error_reply(failure.value, failure)

    # -- AUTHORIZATION -------------------------------------------------------
    @command("CAPA", BOTH, max_args=0)  # RFC 2449 §5
    async def do_capa(self) -> None:
        caps = ["TOP", "UIDL"]
        if self.plaintext_auth_allowed:
            caps += ["USER", "SASL " + " ".join(SASL_MECHANISMS)]
        caps += ["RESP-CODES", "AUTH-RESP-CODE", "PIPELINING"]
        if self.tls_available:
            caps.append("STLS")
        # RFC 2449 §6.7 and §6.5: mail stays until the user deletes it, and
        # clients may log in as often as they like.
        caps += ["EXPIRE NEVER", "LOGIN-DELAY 0", f"IMPLEMENTATION {IMPLEMENTATION}"]
        self.io.write(multiline("Capability list follows", caps))

    @command("USER", AUTH, min_args=1, max_args=1, needs_tls=True)  # RFC 1939 §7
    async def do_user(self, name: str) -> None:
        self._user = name
        self.io.write(ok("send PASS"))

    @command("PASS", AUTH, min_args=1, max_args=1, needs_tls=True)  # RFC 1939 §7
    async def do_pass(self, password: str) -> None:
        if self._user is None:
            raise UserError("send USER first")
        user, self._user = self._user, None
        try:
            credentials = sasl.credentials(user, password)
        except sasl.SaslError:
            # Same answer as a wrong password: the rule is no oracle.
            raise UserError("authentication failed", "AUTH") from None
        await self._login(credentials, "USER")

    # needs_tls: the SASL mechanisms offered (PLAIN, LOGIN) carry the
    # password in the clear, so before TLS even the list (bare AUTH) and an
    # unknown name get [AUTH], as CAPA lists no SASL there.
    @command("AUTH", AUTH, max_args=2, needs_tls=True)  # RFC 5034 §4
    async def do_auth(self, mechanism: str | None = None, initial: str | None = None) -> None:
        if mechanism is None:
            # Not in RFC 5034 but sent by Outlook and others (RFC 1734 era):
            # list the mechanisms.
            self.io.write(multiline("SASL mechanisms follow", list(SASL_MECHANISMS)))
            return
        mechanism = mechanism.upper()
        exchange = sasl.exchange(mechanism)
        if exchange is None:
            # Echo only a well-formed SASL name (RFC 4422 §3.1): a control or
            # 8-bit character in a reply reaches the client's logs and terminals.
            if _SASL_NAME.fullmatch(mechanism):
                raise UserError(f"unsupported authentication mechanism {mechanism}")
            raise UserError("unsupported authentication mechanism")
        self._user = None
        self._sasl = exchange
        if initial is None:
            await self._sasl_feed(None)
            return
        try:
            # RFC 5034 §4: "=" is an empty initial response.
            response = sasl.decode_initial(initial)
        except sasl.SaslError as e:
            self._sasl = None
            raise UserError(str(e)) from None
        await self._sasl_feed(response)

    @command("STLS", AUTH, max_args=0)  # RFC 2595 §4
    async def do_stls(self) -> None:
        if not self.tls_available:
            raise UserError("TLS already active" if self.secure else "TLS not available")
        self.io.write(ok("Begin TLS negotiation now"))
        # RFC 2595 §4 (cf. RFC 3207 §4.2): forget what was learned in plaintext.
        self._user = None
        self.secure = True
        self.io.start_tls()

    # -- SASL (RFC 5034 §4) --------------------------------------------------
    async def _sasl_step(self, event: Command | SaslResponse | BadLine) -> None:
        if not isinstance(event, SaslResponse):
            self._sasl = None
            raise UserError("authentication aborted: bad response line", "AUTH")
        try:
            response = sasl.decode_response(event.data)
        except sasl.SaslError as e:
            self._sasl = None
            raise UserError(str(e)) from None
        await self._sasl_feed(response)

    async def _sasl_feed(self, response: bytes | None) -> None:
        exchange = self._sasl
        assert exchange is not None
        try:
            outcome = exchange.step(response)
        except sasl.SaslError as e:
            self._sasl = None
            raise UserError(str(e), "AUTH") from None
        if isinstance(outcome, bytes):
            # RFC 5034 §4: "+ " and the base64 challenge.
            self.io.write(b"+ " + sasl.encode_challenge(outcome) + b"\r\n")
            self.io.expect_sasl_response()
            return
        self._sasl = None
        await self._login(outcome, exchange.name)

    # -- login -----------------------------------------------------------------
    async def _login(self, credentials: sasl.Credentials, method: str) -> None:
        """Through the one login path (xmail.auth.login): it audits."""
        try:
            lease = await login(self.ctx, credentials, protocol="pop3", client_ip=self.client_ip,
                                method=method)
        except Exception:
            self._login_failed(Failure())
            return
        self._logged_in(lease)

    def _logged_in(self, lease: Lease) -> None:
        if self.state is not State.AUTHORIZATION:
            # The connection went away while the password was checked.
            lease.release()
            return
        address = lease.address
        # RFC 1939 §8 and RFC 2449 §8.1.2: one session per maildrop.
        if not self.locks.acquire(address):
            lease.release()
            self.io.write(err("maildrop is locked by another POP3 session", "IN-USE"))
            return
        try:
            folder = lease.account.mailbox.folder(MAILDROP_FOLDER)
            status = folder.status()
            records = folder.records()
        except Exception:
            self.locks.release(address)
            lease.release()
            self._fault("cannot open maildrop")
            return
        self.maildrop = Maildrop(folder, status.uidvalidity, [r.uid for r in records],
                                 [r.size for r in records], set())
        self.account = address
        self.lease = lease
        self.state = State.TRANSACTION
        self.io.write(ok(f"maildrop has {len(records)} messages ({sum(self.maildrop.sizes)} octets)"))

    def _login_failed(self, failure: Failure) -> None:
        # login() has audited the attempt.
        if failure.check(UnauthorizedLogin, LoginFailed):
            # AccountDisabled is an UnauthorizedLogin: answered the same way
            # so that the reply does not tell a disabled account apart.
            self._auth_failures += 1
            # RFC 3206 §5: [AUTH] = the credentials are refused; retrying
            # the same ones will not help.  Only the password's owner learns
            # that the authorisation identity was the reason.
            if failure.check(AuthorizationFailed):
                self.io.write(err("authorization identity not allowed", "AUTH"))
            else:
                self.io.write(err("authentication failed", "AUTH"))
            if self._auth_failures >= MAX_AUTH_FAILURES and self.state is State.AUTHORIZATION:
                self.io.write(err("too many authentication failures, closing"))
                self._close()
            return
        if not failure.check(LoginUnavailable):
            self._log.failure("POP3 login error for {client}", failure, client=self.client_ip)
        # RFC 3206 §4: [SYS/TEMP] = try again later, the same credentials may work.
        self.io.write(err("authentication temporarily unavailable, try again later", "SYS/TEMP"))

    # -- TRANSACTION -----------------------------------------------------------
    def _message(self, arg: str) -> int:
        """A message number that exists and is not marked deleted (RFC 1939 §5)."""
        drop = self.maildrop
        assert drop is not None
        if not arg.isascii() or not arg.isdigit() or len(arg) > 9:
            raise UserError("invalid message number")
        number = int(arg)
        if not 1 <= number <= len(drop.uids):
            raise UserError("no such message")
        if number in drop.deleted:
            raise UserError(f"message {number} already deleted")
        return number

    @command("STAT", TRANS, max_args=0)  # RFC 1939 §5
    async def do_stat(self) -> None:
        drop = self.maildrop
        assert drop is not None
        visible = drop.visible()
        self.io.write(ok(f"{len(visible)} {sum(drop.sizes[n - 1] for n in visible)}"))

    @command("LIST", TRANS, max_args=1)  # RFC 1939 §5
    async def do_list(self, arg: str | None = None) -> None:
        drop = self.maildrop
        assert drop is not None
        if arg is not None:
            number = self._message(arg)
            self.io.write(ok(f"{number} {drop.sizes[number - 1]}"))
            return
        visible = drop.visible()
        total = sum(drop.sizes[n - 1] for n in visible)
        self.io.write(multiline(f"{len(visible)} messages ({total} octets)",
                                [f"{n} {drop.sizes[n - 1]}" for n in visible]))

    @command("UIDL", TRANS, max_args=1)  # RFC 1939 §7
    async def do_uidl(self, arg: str | None = None) -> None:
        drop = self.maildrop
        assert drop is not None
        if arg is not None:
            number = self._message(arg)
            self.io.write(ok(f"{number} {drop.uidl(number)}"))
            return
        self.io.write(multiline("unique-id listing follows",
                                [f"{n} {drop.uidl(n)}" for n in drop.visible()]))

    @command("RETR", TRANS, min_args=1, max_args=1)  # RFC 1939 §5
    async def do_retr(self, arg: str) -> None:
        number = self._message(arg)
        await self._send(number, None)

    @command("TOP", TRANS, min_args=2, max_args=2)  # RFC 1939 §7
    async def do_top(self, arg: str, lines: str) -> None:
        number = self._message(arg)
        if not lines.isascii() or not lines.isdigit() or len(lines) > 9:
            raise UserError("invalid number of lines")
        await self._send(number, int(lines))

    async def _send(self, number: int, body_lines: int | None) -> None:
        drop = self.maildrop
        assert drop is not None
        try:
            fileobj = drop.folder.open_message(drop.uids[number - 1])
        except (NoSuchMessage, FileNotFoundError):
            # Expunged by IMAP (or another process) since login: the list
            # stays fixed, only this message is unavailable.
            raise UserError(f"message {number} was removed by another session") from None
        except (StoreError, OSError):
            self._log.failure("POP3 cannot open message {uid} of {account}",
                              uid=drop.uids[number - 1], account=self.account)
            raise UserError("cannot read message, try again later", "SYS/TEMP") from None
        size = drop.sizes[number - 1]
        status = ok(f"{size} octets" if body_lines is None else "top of message follows")
        try:
            d = self.io.send_message(status, fileobj, size, MultilineEncoder(body_lines))
        except OSError:
            self._log.failure("POP3 cannot read message {uid} of {account}",
                              uid=drop.uids[number - 1], account=self.account)
            raise UserError("cannot read message, try again later", "SYS/TEMP") from None
        if d is None:
            return  # all written (a small message: the common case)
        try:
            await d
        except Exception:
            # Part of the message is on the wire already: no reply can follow
            # that the client would parse correctly, so the connection ends.
            self._log.failure("POP3 reading message {uid} of {account} failed",
                              uid=drop.uids[number - 1], account=self.account)
            self._close()

    @command("DELE", TRANS, min_args=1, max_args=1)  # RFC 1939 §5
    async def do_dele(self, arg: str) -> None:
        drop = self.maildrop
        assert drop is not None
        number = self._message(arg)
        drop.deleted.add(number)  # RFC 1939 §5: marked; removed in UPDATE only
        self.io.write(ok(f"message {number} deleted"))

    @command("RSET", TRANS, max_args=0)  # RFC 1939 §5
    async def do_rset(self) -> None:
        drop = self.maildrop
        assert drop is not None
        drop.deleted.clear()
        self.io.write(ok(f"maildrop has {len(drop.uids)} messages ({sum(drop.sizes)} octets)"))

    @command("NOOP", TRANS, max_args=0)  # RFC 1939 §5
    async def do_noop(self) -> None:
        self.io.write(ok())

    @command("QUIT", BOTH, max_args=0)  # RFC 1939 §4 and §6
    async def do_quit(self) -> None:
        if self.state is State.AUTHORIZATION:
            self.io.write(ok("bye"))
            self._close()
            return
        # RFC 1939 §6: QUIT in TRANSACTION enters UPDATE and removes the
        # marked messages (into Recycle, per the store).
        drop = self.maildrop
        assert drop is not None
        self.state = State.UPDATE
        uids = [drop.uids[n - 1] for n in sorted(drop.deleted)]
        try:
            removed = await settle(drop.folder.expunge(uids)) if uids else []
            self._audit_deleted(removed)
        except Exception:
            self._log.failure("POP3 UPDATE failed for {account}", account=self.account)
            # RFC 1939 §6: -ERR when some deleted messages were not removed.
            self.io.write(err("some deleted messages not removed", "SYS/TEMP"))
        else:
            self.io.write(ok(f"{self.ctx.settings.server.hostname} POP3 server signing off "
                             f"({len(uids)} messages deleted)"))
        finally:
            self._release()
            self._close()

    def _audit_deleted(self, removed: Any) -> None:
        if self.ctx.audit is not None:
            for uid in removed:  # into Recycle, per the store
                self.ctx.audit.mail("deleted", account=self.account, folder="INBOX", uid=uid,
                                    recycled=True, result="ok")

    # -- end of session ---------------------------------------------------------
    def _close(self) -> None:
        if self.state is not State.UPDATE:
            self._release()
        self.state = State.CLOSED
        self.io.close()

    def _release(self) -> None:
        """Give up the maildrop and the login (its lease: slot, audit,
        avatar).  Idempotent."""
        if self.account is not None:
            self.locks.release(self.account)
            self.account = None
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.release()

    def connection_lost(self) -> None:
        """The client went away.  RFC 1939 §6: no UPDATE, nothing deleted.
        A QUIT whose expunge is still running releases the lock when done."""
        if self.state is State.UPDATE:
            return
        self.state = State.CLOSED
        self._sasl = None
        self._release()
