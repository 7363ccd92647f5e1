# -*- test-case-name: tests.protocols.managesieve.test_session,tests.protocols.managesieve.test_clients -*-
"""The ManageSieve state machine (RFC 5804): non-authenticated ->
authenticated -> logged out.

One table (`COMMANDS`, a skeleton.CommandTable filled by the `@command`
decorators on the handlers) says which command is valid in which state,
whether it needs a login or TLS, and its arity; `ManageSieveSession.handle`
runs the shared gate (xmail/protocols/skeleton.py) before any handler.
Handlers are coroutines run by `skeleton.start`: most answer at once; the
ones that wait (a login, a script check in the thread pool, an index
write) leave a Deferred, and the protocol reads no further command until
it fires, so responses stay in command order (RFC 5804 has no tags).

Errors are answered in one place (`_error_reply`), RFC 5804 §1.3: a user
error is `NO (CODE) "text"`, a syntax error `NO "text"` (and counts towards
MAX_BAD_COMMANDS), a server fault `NO (TRYLATER) ...` plus a logged
traceback.  The connection stays usable after a NO.

Scripts are reached only through `ctx.sieve_scripts`
(xmail.sieve.interfaces.ISieveScripts), owned by the logged-in user's
address.  Parsing a script (`check`) is CPU work: it runs in the factory's
thread pool (`run_check`), never on the reactor.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable
from typing import Any, Protocol

from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger
from twisted.python.failure import Failure

from xmail.auth import sasl
from xmail.auth.interfaces import AuthorizationFailed, LoginUnavailable
from xmail.auth.login import Lease, login
from xmail.protocols.managesieve import response
from xmail.protocols.managesieve.parser import (
    PREAUTH_DISCARD_LIMIT,
    PREAUTH_LITERAL_LIMIT,
    Argument,
    Command,
    Number,
    Rejected,
    SaslResponse,
    String,
)
from xmail.protocols.skeleton import (
    BadSyntax,
    CommandTable,
    Denied,
    Refusal,
    ServerFault,
    UserError,
    gate,
    settle,
    start,
)
from xmail.sieve.interfaces import (
    MANAGED_PREFIX,
    MAX_REDIRECTS,
    NoSuchScript,
    ScriptActive,
    ScriptExists,
    SieveQuotaError,
    SieveScriptError,
)

IMPLEMENTATION = "xmail"
PROTOCOL = "managesieve"  # the login path's protocol name (audit, session slots)
SASL_MECHANISMS = sasl.MECHANISMS
MAX_AUTH_FAILURES = 3  # then BYE
MAX_BAD_COMMANDS = 10  # invalid commands before BYE
# After login a literal may carry a whole script; one bigger than this is
# read and dropped (NO (QUOTA/MAXSIZE)), one bigger than the discard limit
# ends the connection.
LITERAL_SLACK = 1024
AUTH_DISCARD_LIMIT = 16 * 1024 * 1024
_SASL_NAME = re.compile(r"[A-Z0-9_-]{1,20}")


class State(enum.Enum):
    NONAUTH = "non-authenticated"
    AUTH = "authenticated"
    LOGOUT = "logged out"


NONAUTH = frozenset({State.NONAUTH})
AUTH = frozenset({State.AUTH})
ANY = frozenset({State.NONAUTH, State.AUTH})


class SessionIO(Protocol):
    """What the session needs from its connection (server.py)."""

    def write(self, data: bytes) -> None: ...

    def start_tls(self) -> None:
        """Discard buffered input and start TLS (called after "OK")."""

    def expect_sasl_response(self) -> None: ...

    def set_literal_limits(self, limit: int, discard: int) -> None: ...

    def run_check(self, fn: Callable[..., Any], *args: Any) -> defer.Deferred[Any]:
        """fn(*args) in the factory's bounded thread pool."""

    def close(self) -> None: ...


def _code(error: SieveQuotaError) -> str:
    return error.code if error.code in ("QUOTA/MAXSIZE", "QUOTA/MAXSCRIPTS") else "QUOTA"


# The one ManageSieve command table; the `do_*` methods register themselves.
COMMANDS: CommandTable[Any] = CommandTable(PROTOCOL)
command = COMMANDS.command


class ManageSieveSession:
    """One client's ManageSieve conversation."""

    _log = Logger()

    def __init__(self, ctx: Any, io: SessionIO, *, client_ip: str, secure: bool):
        self.ctx = ctx
        self.io = io
        self.client_ip = client_ip
        self.secure = secure
        self.state = State.NONAUTH
        # The login (xmail.auth.login.Lease), owned by this session: releasing
        # it is the only way the user's session slot is given back.
        self.lease: Lease | None = None
        self._sasl: sasl.Exchange | None = None
        self._auth_failures = 0
        self._bad_commands = 0
        self._loopback_exempt = ctx.is_loopback(client_ip)

    # -- policy --------------------------------------------------------------------
    @property
    def owner(self) -> str:
        assert self.lease is not None
        return self.lease.address

    @property
    def tls_available(self) -> bool:
        return not self.secure and self.ctx.tls is not None

    @property
    def plaintext_auth_allowed(self) -> bool:
        # RFC 5804 §2.1 / RFC 2595 §2.3: PLAIN and LOGIN carry the password
        # in the clear; refused before TLS except from loopback clients
        # ([server] loopback_plaintext_auth), as POP3 and IMAP decide.
        return self.secure or self._loopback_exempt

    @property
    def scripts(self) -> Any:
        scripts = self.ctx.sieve_scripts
        if scripts is None:
            raise ServerFault("no script store")
        return scripts

    def capabilities(self) -> bytes:
        """RFC 5804 §1.7: one `"NAME" ["value"]` line per capability."""
        s = response.string
        lines = [s("IMPLEMENTATION") + b" " + s(IMPLEMENTATION)]
        # RFC 5804 §1.7: SASL may be empty only when STARTTLS is offered.
        mechanisms = " ".join(SASL_MECHANISMS) if self.plaintext_auth_allowed else ""
        lines.append(s("SASL") + b" " + s(mechanisms))
        lines.append(s("SIEVE") + b" " + s(" ".join(self._extensions())))
        if self.tls_available and self.state is State.NONAUTH:
            lines.append(s("STARTTLS"))
        lines.append(s("MAXREDIRECTS") + b" " + s(str(MAX_REDIRECTS)))
        if self.state is State.AUTH:
            # RFC 5804 §1.7: the canonical name of the logged-in user.
            lines.append(s("OWNER") + b" " + s(self.owner))
        lines.append(s("UNAUTHENTICATE"))  # RFC 5804 §2.14
        lines.append(s("VERSION") + b" " + s("1.0"))
        return b"".join(line + b"\r\n" for line in lines)

    def _extensions(self) -> tuple[str, ...]:
        scripts = self.ctx.sieve_scripts
        if scripts is None:
            return ()
        try:
            return tuple(scripts.extensions)
        except ImportError:
            # The engine (xmail.sieve.compiler) is not installed: nothing can
            # be checked, so nothing is advertised.
            return ()

    def greeting(self) -> bytes:
        # RFC 5804 §1.7: the greeting is the capability response.
        return self.capabilities() + response.ok(f"{self.ctx.settings.server.hostname} ManageSieve ready.")

    # -- dispatch --------------------------------------------------------------------
    def handle(self, event: Command | SaslResponse | Rejected) -> defer.Deferred[Any] | None:
        """Answer one parser event; a Deferred means "wait before the next"."""
        if self.state is State.LOGOUT:
            return None  # RFC 5804 §2.3: commands after LOGOUT are ignored
        try:
            if self._sasl is not None:
                waiting = start(self._sasl_step(event))
            elif isinstance(event, Rejected):
                self._rejected(event)
                return None
            elif isinstance(event, SaslResponse):  # pragma: no cover - the parser guards this
                self._bad("unexpected SASL response")
                return None
            else:
                checked = gate(COMMANDS, event.name, state=self.state, nargs=len(event.args),
                               tls=self.plaintext_auth_allowed,
                               authenticated=self.state is State.AUTH)
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

    def _rejected(self, event: Rejected) -> None:
        if event.fatal:
            self.io.write(response.bye(event.reason, "QUOTA/MAXSIZE" if event.too_big else None))
            self._close()
            return
        if event.too_big and self.state is State.AUTH:
            # RFC 5804 §1.3: a script over the size limit.
            self.io.write(response.no(event.reason, "QUOTA/MAXSIZE"))
            return
        self._bad(event.reason)

    def _refused(self, denied: Denied) -> None:
        if denied.refusal is Refusal.NEEDS_TLS:
            # RFC 5804 §1.3 ENCRYPT-NEEDED: authenticate after STARTTLS.
            self.io.write(response.no("Plaintext authentication disallowed on an unencrypted "
                                      "connection, use STARTTLS", "ENCRYPT-NEEDED"))
            return
        if denied.refusal is Refusal.UNKNOWN:
            text = "Unknown command"
        elif denied.refusal is Refusal.WRONG_ARITY:
            text = f"Wrong number of arguments for {denied.name}"
        elif denied.refusal is Refusal.NEEDS_AUTH:
            text = f"Authenticate first ({denied.name})"
        else:
            text = f"{denied.name} is not valid in the {self.state.value} state"
        self._bad(text)

    def _error_reply(self, error: BaseException, failure: Failure | None = None) -> None:
        """The one place a handler's exception becomes a NO (RFC 5804 §1.3)."""
        if self.state is State.LOGOUT:
            if not isinstance(error, (UserError, BadSyntax)):
                self._log.failure("ManageSieve command failed for {client}", failure, client=self.client_ip)
            return
        if isinstance(error, UserError):
            self.io.write(response.no(error.text, error.code))
        elif isinstance(error, BadSyntax):
            self._bad(error.text)
        else:
            self._log.failure("ManageSieve {what} for {client}", failure,
                              what=error.text if isinstance(error, ServerFault) else "command failed",
                              client=self.client_ip)
            # RFC 5804 §1.3 TRYLATER: a temporary failure.
            self.io.write(response.no("Internal server error, try again later", "TRYLATER"))

    def _deferred_error(self, failure: Failure) -> None:
        self._error_reply(failure.value, failure)

    def _bad(self, text: str) -> None:
        self.io.write(response.no(text))
        self._bad_commands += 1
        if self._bad_commands >= MAX_BAD_COMMANDS:
            self.io.write(response.bye("Too many invalid commands"))
            self._close()

    # -- arguments ---------------------------------------------------------------------
    def _string(self, arg: Argument, what: str) -> bytes:
        if not isinstance(arg, String):
            # RFC 5804 §4: names and scripts are quoted strings or literals.
            raise BadSyntax(f"{what} must be a quoted string or a literal")
        return arg.value

    def _name(self, arg: Argument, *, managed_ok: bool = False) -> str:
        """RFC 5804 §1.6: a script name is UTF-8 without control characters."""
        raw = self._string(arg, "the script name")
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise UserError(None, "Script name is not UTF-8") from None
        if not self.scripts.valid_name(name):
            raise UserError(None, "Invalid script name")
        if not managed_ok and name.startswith(MANAGED_PREFIX):
            # Vacation and forwarding (xmailctl vacation/forward) keep their
            # rules here: listed and readable, changed only by the server.
            raise UserError(None, f"Script names starting with {MANAGED_PREFIX} are reserved "
                                  "for the server's vacation and forwarding rules")
        return name

    def _number(self, arg: Argument, what: str) -> int:
        if not isinstance(arg, Number):
            raise BadSyntax(f"{what} must be a number")
        return arg.value

    # -- non-authenticated -------------------------------------------------------------
    @command("CAPABILITY", ANY, max_args=0)  # RFC 5804 §2.4
    async def do_capability(self) -> None:
        self.io.write(self.capabilities() + response.ok("Capability completed."))

    @command("NOOP", ANY, max_args=1)  # RFC 5804 §2.13
    async def do_noop(self, tag: Argument | None = None) -> None:
        if tag is None:
            self.io.write(response.ok("Done"))
            return
        # RFC 5804 §2.13: the string comes back in a TAG response code.
        self.io.write(response.ok("Done", b"TAG " + response.string(self._string(tag, "the tag"))))

    @command("LOGOUT", max_args=0)  # RFC 5804 §2.3 (errata 7825: always OK)
    async def do_logout(self) -> None:
        self.io.write(response.ok("Logout completed."))
        self._close()

    @command("STARTTLS", NONAUTH, max_args=0)  # RFC 5804 §2.2
    async def do_starttls(self) -> None:
        if not self.tls_available:
            raise UserError(None, "TLS already active" if self.secure else "TLS not available")
        self.io.write(response.ok("Begin TLS negotiation now."))
        self.secure = True
        self.io.start_tls()
        # RFC 5804 §2.2: after the handshake the server re-issues the
        # capabilities (written now, they leave once TLS is up).
        self.io.write(self.capabilities() + response.ok("TLS negotiation successful."))

    @command("AUTHENTICATE", NONAUTH, min_args=1, max_args=2, needs_tls=True)  # RFC 5804 §2.1
    async def do_authenticate(self, mechanism: Argument, initial: Argument | None = None) -> None:
        name = self._string(mechanism, "the mechanism").decode("ascii", "replace").upper()
        exchange = sasl.exchange(name)
        if exchange is None:
            # Echo only a well-formed SASL name (RFC 4422 §3.1).
            raise UserError(None, f"Unsupported authentication mechanism {name}"
                            if _SASL_NAME.fullmatch(name) else "Unsupported authentication mechanism")
        if initial is None:
            self._sasl = exchange
            await self._sasl_feed(None)
            return
        try:
            first = sasl.decode_initial(self._string(initial, "the initial response"))
        except sasl.SaslError as e:
            raise UserError(None, str(e)) from None
        self._sasl = exchange
        await self._sasl_feed(first)

    async def _sasl_step(self, event: Command | SaslResponse | Rejected) -> None:
        if not isinstance(event, SaslResponse):
            self._sasl = None
            if isinstance(event, Rejected) and event.fatal:
                self._rejected(event)
                return
            raise UserError(None, "Authentication aborted: expected a SASL response string")
        try:
            # RFC 5804 §2.1: "*" cancels; the server answers NO.
            data = sasl.decode_response(event.data)
        except sasl.SaslCancelled:
            self._sasl = None
            raise UserError(None, "Authentication cancelled") from None
        except sasl.SaslError as e:
            self._sasl = None
            raise UserError(None, str(e)) from None
        await self._sasl_feed(data)

    async def _sasl_feed(self, data: bytes | None) -> None:
        exchange = self._sasl
        assert exchange is not None
        try:
            outcome = exchange.step(data)
        except sasl.SaslError as e:
            self._sasl = None
            raise UserError(None, str(e)) from None
        if isinstance(outcome, bytes):
            # RFC 5804 §2.1: a challenge is a string holding base64.
            self.io.write(response.string(sasl.encode_challenge(outcome)) + b"\r\n")
            self.io.expect_sasl_response()
            return
        self._sasl = None
        await self._login(outcome, exchange.name)

    async def _login(self, credentials: sasl.Credentials, method: str) -> None:
        """Through the one login path (xmail.auth.login): throttle, password,
        session slot, audit line."""
        try:
            lease = await login(self.ctx, credentials, protocol=PROTOCOL, client_ip=self.client_ip,
                                method=method)
        except Exception:
            self._login_failed(Failure())
            return
        if self.state is not State.NONAUTH:
            lease.release()  # the connection went away while the password was checked
            return
        self.lease = lease
        self.state = State.AUTH
        self.io.set_literal_limits(self.scripts.max_script_size + LITERAL_SLACK, AUTH_DISCARD_LIMIT)
        self.io.write(response.ok("Logged in."))

    def _login_failed(self, failure: Failure) -> None:
        if failure.check(UnauthorizedLogin, LoginFailed):
            self._auth_failures += 1
            if failure.check(AuthorizationFailed):
                self.io.write(response.no("Authorization identity not allowed"))
            else:
                self.io.write(response.no("Authentication failed"))
            if self._auth_failures >= MAX_AUTH_FAILURES and self.state is State.NONAUTH:
                self.io.write(response.bye("Too many authentication failures"))
                self._close()
            return
        if not failure.check(LoginUnavailable):
            self._log.failure("ManageSieve login error for {client}", failure, client=self.client_ip)
        # RFC 5804 §1.3 TRYLATER: throttled, too many sessions, or a fault.
        self.io.write(response.no("Authentication temporarily unavailable, try again later", "TRYLATER"))

    # -- authenticated ---------------------------------------------------------------------
    @command("UNAUTHENTICATE", AUTH, max_args=0, needs_auth=True)  # RFC 5804 §2.14
    async def do_unauthenticate(self) -> None:
        self._release()
        self.state = State.NONAUTH
        self.io.set_literal_limits(PREAUTH_LITERAL_LIMIT, PREAUTH_DISCARD_LIMIT)
        self.io.write(response.ok("Unauthenticated."))

    @command("LISTSCRIPTS", AUTH, max_args=0, needs_auth=True)  # RFC 5804 §2.7
    async def do_listscripts(self) -> None:
        out = bytearray()
        for name, active in self.scripts.list(self.owner):
            out += response.string(name) + (b" ACTIVE\r\n" if active else b"\r\n")
        self.io.write(bytes(out) + response.ok("Listscripts completed."))

    @command("GETSCRIPT", AUTH, min_args=1, max_args=1, needs_auth=True)  # RFC 5804 §2.9
    async def do_getscript(self, name_arg: Argument) -> None:
        name = self._name(name_arg, managed_ok=True)
        text = self.scripts.get(self.owner, name)
        if text is None:
            raise UserError("NONEXISTENT", "There is no script by that name")
        self.io.write(response.literal(text.encode("utf-8")) + b"\r\n" + response.ok("Getscript completed."))

    @command("HAVESPACE", AUTH, min_args=2, max_args=2, needs_auth=True)  # RFC 5804 §2.5
    async def do_havespace(self, name_arg: Argument, size_arg: Argument) -> None:
        name = self._name(name_arg)
        size = self._number(size_arg, "the size")
        refused = self.scripts.space_for(self.owner, name, size)
        if refused is not None:
            raise UserError(_code(refused), str(refused))
        self.io.write(response.ok("Putscript would succeed."))

    @command("CHECKSCRIPT", AUTH, min_args=1, max_args=1, needs_auth=True)  # RFC 5804 §2.12
    async def do_checkscript(self, script_arg: Argument) -> None:
        await self._check(self._string(script_arg, "the script"))
        self.io.write(response.ok("Script is valid."))

    @command("PUTSCRIPT", AUTH, min_args=2, max_args=2, needs_auth=True)  # RFC 5804 §2.6
    async def do_putscript(self, name_arg: Argument, script_arg: Argument) -> None:
        name = self._name(name_arg)
        script = self._string(script_arg, "the script")
        scripts = self.scripts
        refused = scripts.space_for(self.owner, name, len(script))
        if refused is not None:
            raise UserError(_code(refused), str(refused))
        text = await self._check(script)
        try:
            await settle(defer.maybeDeferred(scripts.put, self.owner, name, text))
        except SieveQuotaError as e:
            self._audit("PUTSCRIPT", name, _code(e))
            raise UserError(_code(e), str(e)) from None
        self._audit("PUTSCRIPT", name, "ok", size=len(script))
        self.io.write(response.ok("Putscript completed."))

    @command("SETACTIVE", AUTH, min_args=1, max_args=1, needs_auth=True)  # RFC 5804 §2.8
    async def do_setactive(self, name_arg: Argument) -> None:
        # RFC 5804 §2.8: the empty name deactivates every script.
        name = None if self._string(name_arg, "the script name") == b"" else self._name(name_arg)
        try:
            await settle(defer.maybeDeferred(self.scripts.activate, self.owner, name))
        except NoSuchScript:
            self._audit("SETACTIVE", name or "", "NONEXISTENT")
            raise UserError("NONEXISTENT", "There is no script by that name") from None
        self._audit("SETACTIVE", name or "", "ok")
        self.io.write(response.ok("Setactive completed."))

    @command("DELETESCRIPT", AUTH, min_args=1, max_args=1, needs_auth=True)  # RFC 5804 §2.10
    async def do_deletescript(self, name_arg: Argument) -> None:
        name = self._name(name_arg)
        try:
            await settle(defer.maybeDeferred(self.scripts.remove, self.owner, name))
        except NoSuchScript:
            self._audit("DELETESCRIPT", name, "NONEXISTENT")
            raise UserError("NONEXISTENT", "There is no script by that name") from None
        except ScriptActive:
            self._audit("DELETESCRIPT", name, "ACTIVE")
            raise UserError("ACTIVE", "The active script cannot be deleted") from None
        self._audit("DELETESCRIPT", name, "ok")
        self.io.write(response.ok("Deletescript completed."))

    @command("RENAMESCRIPT", AUTH, min_args=2, max_args=2, needs_auth=True)  # RFC 5804 §2.11
    async def do_renamescript(self, old_arg: Argument, new_arg: Argument) -> None:
        old = self._name(old_arg)
        new = self._name(new_arg)
        try:
            await settle(defer.maybeDeferred(self.scripts.rename, self.owner, old, new))
        except NoSuchScript:
            self._audit("RENAMESCRIPT", old, "NONEXISTENT", new=new)
            raise UserError("NONEXISTENT", "There is no script by that name") from None
        except ScriptExists:
            self._audit("RENAMESCRIPT", old, "ALREADYEXISTS", new=new)
            raise UserError("ALREADYEXISTS", "A script with the new name already exists") from None
        self._audit("RENAMESCRIPT", old, "ok", new=new)
        self.io.write(response.ok("Renamescript completed."))

    async def _check(self, script: bytes) -> str:
        """The script's text once check() (in the thread pool) accepts it; a
        script error is the user's NO with its line (`str(SieveScriptError)`
        is "line N: message")."""
        scripts = self.scripts
        if len(script) > scripts.max_script_size:
            raise UserError("QUOTA/MAXSIZE", f"Script is larger than {scripts.max_script_size} octets")
        try:
            # RFC 5804 §2.6 / RFC 5228 §2.2: a script is UTF-8; a linear
            # pass over at most MAX_SCRIPT_SIZE octets, no thread needed.
            text = script.decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(None, f"Script is not valid UTF-8 (octet {e.start + 1})") from None
        try:
            await self.io.run_check(scripts.check, script)
        except SieveScriptError as e:
            raise UserError(None, str(e)) from None
        return text

    def _audit(self, command_name: str, name: str, result: str, **fields: Any) -> None:
        """One admin-log line per change to the user's rules (the log
        xmailctl sieve/vacation/forward changes go to)."""
        audit = self.ctx.audit
        admin = getattr(audit, "admin", None)
        if admin is None:
            return
        admin(self.owner, [command_name, name], result, account=self.owner, protocol=PROTOCOL,
              ip=self.client_ip, **fields)

    # -- end of session ------------------------------------------------------------------
    def _close(self) -> None:
        self.state = State.LOGOUT
        self._sasl = None
        self._release()
        self.io.close()

    def _release(self) -> None:
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.release()

    def connection_lost(self) -> None:
        self.state = State.LOGOUT
        self._sasl = None
        self._release()
