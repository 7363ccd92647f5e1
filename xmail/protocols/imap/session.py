# -*- test-case-name: tests.protocols.test_imap_session -*-
"""The IMAP session: connection state (RFC 3501 §3), the one command
registry, and the one place where errors become wire replies.

Every command is registered once, with `@command(name, states, ...)`, in the
modules of `commands/`.  Its flags decide what the dispatcher does around
it, so no handler repeats these rules:

- `states`: where the command is valid (RFC 3501 §6.1-§6.4); elsewhere BAD.
- `forbids_expunge`: the seq-number forms of FETCH, STORE and SEARCH, during
  and right after which no untagged EXPUNGE may be sent (RFC 3501 §7.4.1);
  their UID forms may.

Handlers are coroutines `async def handler(session, request) -> str`; they
write untagged data with `session.untagged(...)` and return the text of the
tagged OK.  They signal failures by raising:

- `No(text, code)` — a user error -> `tag NO [CODE] text`
- `Bad(text)` (or a grammar error) -> `tag BAD text`
- a StoreError from the store -> `NO [CODE]` from `STORE_ERROR_CODES`
- anything else is a server fault -> `NO [SERVERBUG]` and a logged traceback.

The session never touches a socket: it is driven by server.py through the
small `Connection` protocol below, and unit tests drive it the same way.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from twisted.internet import defer
from twisted.logger import Logger

from xmail.protocols.imap import searchctx, searchres, sync
from xmail.protocols.imap.grammar import Request
from xmail.protocols.imap.response import resp_text
from xmail.protocols.skeleton import (
    BadSyntax,
    CommandTable,
    Denied,
    Refusal,
    ServerFault,
    UserError,
    gate,
)
from xmail.store import interfaces as store_errors


class State(enum.Enum):
    NOT_AUTHENTICATED = "not authenticated"
    AUTHENTICATED = "authenticated"
    SELECTED = "selected"
    LOGOUT = "logout"


ANY = frozenset({State.NOT_AUTHENTICATED, State.AUTHENTICATED, State.SELECTED})
NOT_AUTH = frozenset({State.NOT_AUTHENTICATED})
AUTH = frozenset({State.AUTHENTICATED, State.SELECTED})
SELECTED = frozenset({State.SELECTED})


class No(UserError):
    """A user error: tagged NO with an optional response code (RFC 5530)."""

    def __init__(self, text: str, code: str | None = None):
        super().__init__(code, text)


class Bad(BadSyntax):
    """A protocol error: tagged BAD."""


class Disconnect(Exception):
    """End the session after the tagged reply (LOGOUT, too many errors)."""


# RFC 5530 response codes for store errors; APPEND/COPY/MOVE turn
# NoSuchFolder into TRYCREATE themselves (RFC 3501 §6.3.11, §6.4.7).
STORE_ERROR_CODES: dict[type, str] = {
    store_errors.NoSuchFolder: "NONEXISTENT",
    store_errors.FolderExists: "ALREADYEXISTS",
    store_errors.InvalidFolderName: "CANNOT",
    store_errors.FolderNotAllowed: "CANNOT",
    store_errors.NoSuchMessage: "EXPUNGEISSUED",
    store_errors.OverQuota: "OVERQUOTA",
    store_errors.MessageTooLarge: "TOOBIG",
    store_errors.StoreBusy: "UNAVAILABLE",
}

Handler = Callable[["Session", Request], Awaitable[str | None]]


# The one IMAP command table (xmail/protocols/skeleton.py); handlers
# register themselves in commands/ with `@command(name, states, ...)`.
REGISTRY: CommandTable[Handler] = CommandTable("imap")
FORBIDS_EXPUNGE = "forbids_expunge"  # RFC 3501 §7.4.1, seq-number forms only


def command(name: str, states: frozenset[State], *, forbids_expunge: bool = False,
            needs_tls: bool = False) -> Callable[[Handler], Handler]:
    """Register an IMAP command handler in REGISTRY.  needs_tls: refused
    with NO [PRIVACYREQUIRED] unless TLS is active or the client is exempt
    (`Session.plaintext_auth_allowed`)."""
    return REGISTRY.command(name, states, needs_tls=needs_tls,
                            flags={FORBIDS_EXPUNGE} if forbids_expunge else set())


class Connection(Protocol):
    """What a session needs from its transport (server.py implements it)."""

    client_host: str
    is_tls: bool

    def write(self, data: bytes) -> None: ...
    def drain(self) -> defer.Deferred[None] | None: ...
    def read_raw_line(self) -> defer.Deferred[bytes]: ...
    def start_tls(self) -> None: ...
    def tls_available(self) -> bool: ...
    def abort(self) -> None: ...
    def start_compress(self) -> None: ...


MAX_BAD_COMMANDS = 20  # consecutive BAD replies before the client is cut off
MAX_AUTH_FAILURES = 5


class Session:
    """One client's IMAP state; `execute(request)` runs one command."""

    _log = Logger()

    def __init__(self, ctx: Any, conn: Connection, recent: sync.RecentTracker, *,
                 clock: Any = None):
        self.ctx = ctx
        self.conn = conn
        self.recent = recent
        self.clock = clock if clock is not None else ctx.reactor
        self.state = State.NOT_AUTHENTICATED
        self.account: Any = None  # IMailAccount
        self.mailbox: Any = None  # IMailbox
        self.lease: Any = None  # xmail.auth.login.Lease, owned by this session
        self.selected: sync.SelectedFolder | None = None
        self.bad_commands = 0
        self.auth_failures = 0
        self.login_time = 0.0
        self.client_id: dict[str, str | None] | None = None  # RFC 2971
        # RFC 7162 §3.1 / §3.2.3: enabled by ENABLE or (CONDSTORE only) by
        # the first command that uses a MODSEQ; never disabled.
        self.condstore = False
        self.qresync = False
        self.compressing = False  # RFC 4978
        # RFC 9051 §6.3.1: ENABLE IMAP4rev2 switches this session to rev2
        # responses (see rev2.py); never switched back.
        self.rev2 = False
        self.search_result: tuple[Any, frozenset[int]] | None = None  # RFC 5182, see searchres.py
        # RFC 5465: notify.NotifyState while a NOTIFY SET is in force.
        self.notify: Any = None
        # A command is running (its responses are being written); IDLE is a
        # command during which unsolicited responses may go out at any time.
        self.running = False
        self.idling = False
        # Run right after the tagged reply (STARTTLS starts TLS there).
        self.after_reply: Callable[[], None] | None = None
        self.close_after_reply = False

    @property
    def plaintext_auth_allowed(self) -> bool:
        """RFC 3501 §6.2.3 / §11.1: no clear-text passwords before TLS, except
        from loopback clients when [server] loopback_plaintext_auth is on."""
        return self.conn.is_tls or self.ctx.is_loopback(self.conn.client_host)

    # -- output helpers --------------------------------------------------------
    def untagged(self, data: bytes) -> None:
        self.conn.write(b"* " + data + b"\r\n")

    def flush_changes(self, allow_expunge: bool = True) -> None:
        """Send pending EXISTS / EXPUNGE / FETCH of the selected folder,
        then what NOTIFY (RFC 5465) holds for other mailboxes."""
        if self.selected is not None:
            if self.notify is not None:
                # RFC 5465 §5.1: MessageNew's fetch attributes follow EXISTS.
                self.notify.before_flush(self)
            for line in self.selected.flush(allow_expunge):
                self.conn.write(line)
            if self.notify is not None:
                for line in self.notify.after_flush(self):
                    self.conn.write(line)
            for line in searchctx.updates(self):  # RFC 5267 §4 UPDATE
                self.conn.write(line)
        self.flush_notifications()

    def flush_notifications(self) -> None:
        """Send what NOTIFY queued for mailboxes other than the selected one."""
        state = self.notify
        if state is None:
            return
        name = self.selected.folder.name if self.selected is not None else None
        for line in state.take(name):
            self.conn.write(line)
        if state.closed and self.notify is state:
            self.notify = None  # RFC 5465 §5.8: after NOTIFICATIONOVERFLOW, as NOTIFY NONE

    def may_push(self) -> bool:
        """Unsolicited responses may go out now: between commands or in IDLE
        (RFC 5465 §3, RFC 2177)."""
        return self.state in (State.AUTHENTICATED, State.SELECTED) and (not self.running or self.idling)

    # -- dispatch --------------------------------------------------------------
    async def execute(self, request: Request) -> None:
        """Run one command and write its tagged reply.  Raises Disconnect
        when the connection must close after the reply."""
        self.running = True
        try:
            await self._execute(request)
        finally:
            self.running = False
            self.idling = False

    async def _execute(self, request: Request) -> None:
        tag = request.tag
        # tls: "TLS or exempt", the rule of the needs_tls commands (LOGIN,
        # AUTHENTICATE: LOGINDISABLED in CAPABILITY when it is False).
        checked = gate(REGISTRY, request.name, state=self.state, tls=self.plaintext_auth_allowed)
        spec = None if isinstance(checked, Denied) else checked
        forbids_expunge = spec is not None and FORBIDS_EXPUNGE in spec.flags and not request.uid
        disconnect = False
        try:
            if spec is None:
                assert isinstance(checked, Denied)
                if checked.refusal is Refusal.NEEDS_TLS:
                    raise No("use STARTTLS first", "PRIVACYREQUIRED")  # RFC 5530 §3
                raise Bad(self._refusal_text(checked))
            if self.selected is not None:
                # Changes made by other processes become visible at every command.
                self.selected.poll()
            if self.selected is not None:
                request = searchres.expand(self, request)  # RFC 5182 "$"
            text = await spec.handler(self, request)
            if self.notify is not None:
                self.notify.hook(self.selected)  # RFC 5465: a newly selected folder
        except Disconnect:
            disconnect = True
            text = "LOGOUT completed"
        except ConnectionError:
            raise  # the client went away mid-command: nothing to answer
        except Exception as e:
            self.reply_error(tag, e, request.name, forbids_expunge)
            return
        self.bad_commands = 0
        if self.state is not State.LOGOUT:
            self.flush_changes(not forbids_expunge)
        self.conn.write(tag + b" OK " + (text or f"{request.name} completed").encode("utf-8") + b"\r\n")
        if disconnect or self.close_after_reply:
            raise Disconnect()
        after, self.after_reply = self.after_reply, None
        if after is not None:
            after()

    def _refusal_text(self, denied: Denied) -> str:
        if denied.refusal is Refusal.UNKNOWN:
            return f"unknown command {denied.name}"
        return f"{denied.name} not allowed in the {self.state.value} state"

    def reply_error(self, tag: bytes, error: Exception, name: str, forbids_expunge: bool) -> None:
        """The one place where a failed command becomes its tagged reply
        (RFC 3501 §7.1; response codes RFC 5530).  Called from an except
        clause, so a server fault is logged with its traceback."""
        if isinstance(error, UserError):
            self._tagged_after_changes(tag, b"NO", error.text, error.code, forbids_expunge)
            if self.close_after_reply:
                raise Disconnect() from None
            return
        if isinstance(error, BadSyntax):
            self.bad_commands += 1
            self.conn.write(tag + b" BAD " + resp_text(error.text) + b"\r\n")
            if self.bad_commands >= MAX_BAD_COMMANDS:
                self.untagged(b"BYE too many invalid commands")
                raise Disconnect() from None
            return
        if isinstance(error, store_errors.StoreError):
            code = "CANNOT"
            for cls, mapped in STORE_ERROR_CODES.items():
                if isinstance(error, cls):
                    code = mapped
                    break
            self._tagged_after_changes(tag, b"NO", str(error) or type(error).__name__, code,
                                       forbids_expunge)
            return
        # ServerFault or anything unexpected: the traceback goes to the log,
        # the client learns nothing about the server's insides.
        self._log.failure("IMAP {command} failed for {account}", command=name,
                          account=getattr(self.account, "address", None))
        text = error.text if isinstance(error, ServerFault) else "internal server error, logged"
        self._tagged_after_changes(tag, b"NO", text, "SERVERBUG", forbids_expunge)

    def _tagged_after_changes(self, tag: bytes, status: bytes, text: str, code: str | None,
                              forbids_expunge: bool) -> None:
        self.bad_commands = 0
        self.flush_changes(not forbids_expunge)
        line = tag + b" " + status + b" "
        if code:
            line += b"[" + code.encode("ascii") + b"] "
        self.conn.write(line + resp_text(text) + b"\r\n")

    def bad_line(self, tag: bytes | None, reason: str, too_big: bool = False) -> None:
        """A command the tokenizer or grammar refused."""
        if too_big and tag is not None:
            # RFC 7889 §4: APPEND over the limit gets NO [TOOBIG]
            self.conn.write(tag + b" NO [TOOBIG] " + resp_text(reason) + b"\r\n")
            return
        self.bad_commands += 1
        self.conn.write((tag or b"*") + b" BAD " + resp_text(reason) + b"\r\n")
        if self.bad_commands >= MAX_BAD_COMMANDS:
            self.untagged(b"BYE too many invalid commands")
            raise Disconnect()

    # -- RFC 7162 ---------------------------------------------------------------------
    def enable_condstore(self, *, qresync: bool = False) -> list[str]:
        """Turn CONDSTORE (and QRESYNC) on; the names newly enabled."""
        newly = []
        if not self.condstore:
            self.condstore = True
            newly.append("CONDSTORE")
        if qresync and not self.qresync:
            self.qresync = True
            newly.append("QRESYNC")
        if self.selected is not None:
            self.selected.condstore = self.condstore
            self.selected.qresync = self.qresync
            if "CONDSTORE" in newly:
                # RFC 7162 §3.1: the first CONDSTORE enabling command while a
                # mailbox is selected reports its HIGHESTMODSEQ.
                try:
                    highest = self.selected.folder.status().highestmodseq
                except store_errors.StoreError:
                    highest = None  # deleted meanwhile: the command gets its NO
                if highest is not None:
                    self.untagged(b"OK [HIGHESTMODSEQ %d] highest" % highest)
        return newly

    # -- login -----------------------------------------------------------------
    def logged_in(self, lease: Any) -> None:
        """The login succeeded (xmail.auth.login, which audited it): this
        session owns its lease until close()."""
        self.lease = lease
        self.account = lease.account
        self.mailbox = lease.account.mailbox
        self.state = State.AUTHENTICATED
        self.login_time = time.time()

    # -- selection -------------------------------------------------------------
    def deselect(self) -> None:
        if self.selected is not None:
            self.selected.close()
            self.selected = None
        if self.state is State.SELECTED:
            self.state = State.AUTHENTICATED

    def close(self) -> None:
        """The connection is gone: release listeners and log the logout."""
        if self.notify is not None:
            self.notify.close()
            self.notify = None
        self.deselect()
        # Releasing the lease is the only way the user's session slot goes
        # back (and it logs the logout); idempotent.
        lease, self.lease = self.lease, None
        if lease is not None:
            lease.release()
        self.account = None
        self.state = State.LOGOUT
