# -*- test-case-name: tests.auth.test_login -*-
"""The one login path: every protocol's login ends in `login(...)`.

SMTP AUTH, POP3 USER/PASS and AUTH, IMAP LOGIN and AUTHENTICATE (and later
ManageSieve, LDAP binds and proxy logins) hand it checked `Credentials`
(xmail.auth.sasl) and get a `Lease`, or a failure:

1. the portal: the throttle (xmail.auth.throttle) in front of the password
   check (xmail.auth.checker), then the realm's avatar;
2. the authorisation identity, if the client asked for one
   (xmail.auth.sasl: only the user's own addresses, no proxy authorisation);
3. the per-user session slot ([limits] max_connections_per_user, per
   protocol, `ctx.connections`);
4. the audit log: exactly one login line per attempt, whatever its outcome.

The session that gets the Lease owns it.  `Lease.release()` gives the slot
back, logs the logout and logs the avatar out; it is the only way to do so,
and it is idempotent, so a session calls it whenever its login ends: on
logout, on a connection lost, and on an SMTP STARTTLS, which forgets the
login (RFC 3207 §4.2).  A login that completes after its connection went
away is released by the session at once.

Failures (xmail.auth.interfaces): UnauthorizedLogin (AccountDisabled and
AuthorizationFailed are subclasses) and LoginUnavailable (LoginThrottled,
SessionLimit).  Each protocol turns them into its own reply.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from twisted.cred.error import LoginFailed, UnauthorizedLogin
from twisted.internet import defer
from twisted.logger import Logger

from xmail.auth.credentials import login_credentials
from xmail.auth.interfaces import (
    AccountDisabled,
    AuthorizationFailed,
    IMailAccount,
    LoginUnavailable,
    SessionLimit,
)
from xmail.auth.sasl import Credentials

_log = Logger(namespace="xmail.auth.login")


class LoginContext(Protocol):
    """What login() reads from the server context, at call time."""

    portal: Any  # twisted.cred.portal.Portal (avatar: IMailAccount)
    directory: Any  # IDirectory (for the authorisation identity)
    connections: Any  # xmail.limits.UserConnections or None
    audit: Any  # IAuditLog or None


class Lease:
    """A logged-in session's hold on its user: the avatar and the session
    slot.  Owned by one session; `release()` ends it (idempotent)."""

    def __init__(self, address: str, account: Any = None, *, protocol: str = "", client_ip: str = "",
                 on_release: list[Callable[[], None]] | None = None):
        self.address = address  # canonical
        self.account = account  # IMailAccount (None in unit tests of a protocol)
        self.protocol = protocol
        self.client_ip = client_ip
        self._on_release = list(on_release or ())
        self.released = False

    def release(self) -> None:
        """Give the slot back, log the logout, log the avatar out; each step
        runs even if an earlier one fails.  Later calls do nothing."""
        if self.released:
            return
        self.released = True
        steps, self._on_release = self._on_release, []
        for step in steps:
            try:
                step()
            except Exception:
                _log.failure("releasing the login of {address} failed", address=self.address)

    def __repr__(self) -> str:
        state = "released" if self.released else "held"
        return f"<Lease {self.address} {self.protocol} from {self.client_ip} {state}>"


def login(ctx: LoginContext, credentials: Credentials, *, protocol: str, client_ip: str,
          method: str) -> defer.Deferred[Lease]:
    """-> Deferred[Lease]; see the module docstring.  `protocol` names the
    audit log's protocol and the slot ("submission", "pop3", "imap", ...);
    `method` the login method ("PLAIN", "LOGIN", "USER", ...)."""
    audit = ctx.audit

    def record(account: str, result: str) -> None:
        if audit is not None:
            audit.login(account, protocol, client_ip, method, result)

    given = credentials.authcid
    # twisted.cred's IUsernamePassword carries bytes.
    d = defer.maybeDeferred(
        ctx.portal.login,
        login_credentials(credentials.authcid.encode("utf-8"), credentials.password.encode("utf-8"),
                          client_ip=client_ip, protocol=protocol),
        None, IMailAccount)

    def logged_in(result: tuple[Any, Any, Callable[[], None]]) -> Lease:
        _interface, account, logout = result
        address = account.address
        if credentials.authzid and not _may_act_as(ctx.directory, address, credentials.authzid):
            logout()
            record(address, "fail")
            raise AuthorizationFailed(f"{address} may not act as {credentials.authzid}")
        connections = ctx.connections
        if connections is not None and not connections.acquire(address, protocol):
            logout()
            record(address, "throttled")
            raise SessionLimit("too many sessions for this user")
        steps: list[Callable[[], None]] = []
        if connections is not None:
            steps.append(lambda: connections.release(address, protocol))
        if audit is not None:
            steps.append(lambda: audit.logout(address, protocol, client_ip))
        steps.append(logout)
        record(address, "ok")
        return Lease(address, account, protocol=protocol, client_ip=client_ip, on_release=steps)

    def failed(failure: Any) -> Any:
        if failure.check(LoginUnavailable):
            record(given, "throttled")
        elif failure.check(AccountDisabled):
            record(given, "disabled")
        elif failure.check(UnauthorizedLogin, LoginFailed):
            record(given, "fail")
        else:
            _log.failure("{protocol} login error for {ip}", failure, protocol=protocol, ip=client_ip)
            record(given, "fail")
        return failure

    d.addCallbacks(logged_in, failed)
    return d


def _may_act_as(directory: Any, address: str, authzid: str) -> bool:
    """RFC 4422 §3.4.1: the authorisation identity is honoured only when it
    is one of the user's own addresses (an alias, an alias domain)."""
    try:
        return directory is not None and directory.resolve(authzid.strip().lower()) == address
    except Exception:
        return False
