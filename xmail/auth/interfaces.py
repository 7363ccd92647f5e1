"""Users and login as the protocols see them.

Protocols log in through the one login path, `xmail.auth.login.login`
(SASL exchanges in `xmail.auth.sasl`), which fires with a Lease or fails
with UnauthorizedLogin (wrong name or password; AccountDisabled and
AuthorizationFailed are subclasses) or LoginUnavailable (try later;
LoginThrottled and SessionLimit are subclasses).  Recipients and senders are
looked up through IDirectory.  Addresses are case-insensitive and handled
lowercase.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from twisted.cred.error import UnauthorizedLogin
from zope.interface import Attribute, Interface


class DirectoryError(Exception):
    """A directory change was refused; the message says why (CLI prints it)."""


class AccountDisabled(UnauthorizedLogin):
    """The password was right but the account is disabled.  A subclass of
    UnauthorizedLogin, so a protocol answers it like a wrong password; the
    audit log may record "disabled"."""


class LoginUnavailable(Exception):
    """Temporary: the password could not be checked now (the verification
    pool is saturated).  IMAP: NO [UNAVAILABLE]; SMTP: 454 4.7.0;
    POP3: -ERR [SYS/TEMP]."""


class LoginThrottled(LoginUnavailable):
    """Refused without checking the password: too many recent failures from
    this client address (for this account or across accounts).  A
    LoginUnavailable, so every protocol answers "try again later" and audits
    "throttled"; the same credentials may work once `retry_after` seconds
    have passed."""

    def __init__(self, message: str, retry_after: float = 0.0):
        super().__init__(message)
        self.retry_after = retry_after


class AuthorizationFailed(UnauthorizedLogin):
    """The password was right but the user may not act as the requested
    authorisation identity (SASL authzid, RFC 4422 §3.4.1).  IMAP:
    NO [AUTHORIZATIONFAILED] (RFC 5530 §3); elsewhere like a wrong password."""


class SessionLimit(LoginUnavailable):
    """The password was right but the user already holds
    [limits] max_connections_per_user sessions of this protocol.  IMAP:
    NO [LIMIT] (RFC 5530 §3); elsewhere "try again later"."""


@dataclass(frozen=True, slots=True)
class UserRecord:
    address: str  # canonical, lowercase
    enabled: bool = True
    quota_bytes: int | None = None  # None: the [limits] default
    quota_messages: int | None = None
    settings: dict[str, str] = field(default_factory=dict)  # e.g. send_save=off
    created: float = 0.0


class IDirectory(Interface):
    """Domains, alias domains, users and user aliases (in the LMDB index)."""

    def is_local_domain(domain: str) -> bool:
        """A hosted domain or an alias domain."""

    def resolve(address: str) -> str | None:
        """The canonical user address that receives mail for `address`
        (the address itself, a user alias, or the local part at an alias
        domain), or None when no user receives it.  Disabled users still
        receive."""

    def user(address: str) -> UserRecord | None:
        """The record of a canonical address, or None."""

    def may_send_as(user: str, address: str) -> bool:
        """May `user` use `address` in MAIL FROM / From:?  The user's own
        address, its aliases, or either at an alias domain of its domain."""

    def setting(user: str, key: str, default: str | None = None) -> str | None:
        """A per-user setting (`xmailctl user set ADDRESS KEY=VALUE`)."""

    def domain_settings(domain: str) -> dict[str, str]:
        """Per-domain settings (`xmailctl domain set DOMAIN KEY=VALUE`); an
        alias domain answers its primary's; {} when there are none."""


class IMailAccount(Interface):
    """The avatar the realm hands to every protocol after login."""

    address = Attribute("Canonical user address.")
    mailbox = Attribute("The user's xmail.store.interfaces.IMailbox.")
    record = Attribute("The UserRecord at login time.")


class IAuditLog(Interface):
    """One place every protocol reports logins and mail events to (issue #8
    turns it into the rotated audit logs)."""

    def login(account: str, protocol: str, client_ip: str, method: str, result: str) -> None:
        """A login attempt; result is "ok", "fail", "disabled", "throttled"."""

    def logout(account: str, protocol: str, client_ip: str) -> None:
        """A session of account ended."""

    def mail(event: str, **fields: Any) -> None:
        """received / sent / deleted / expunged / recycled / purged / bounced."""


class ILoginThrottle(Interface):
    """Brute-force throttling in front of password checks
    (xmail.auth.throttle.LoginThrottle; the portal's checker calls it)."""

    def admit(client_ip: str | None, account: str) -> Any:
        """-> Deferred firing with a ticket once this attempt may be checked
        (at once, or after a delay), or failing with LoginThrottled.
        client_ip None: the protocol did not say (account rules only)."""

    def finished(ticket: Any, outcome: str) -> None:
        """The attempt ended: "ok" (password right), "fail" (wrong name or
        password) or "error" (not checked: counts neither way)."""


class IFailureCounts(Interface):
    """Where LoginThrottle keeps failure counts: in memory per process
    (MemoryFailureCounts), or shared between worker processes (issue #9).
    Synchronous and cheap: called on the reactor thread.  `scope` is "pair"
    (client address and account), "ip" or "account"."""

    def get(scope: str, key: str, now: float) -> tuple[int, float]:
        """(recent failures, refused until) for key; (0, 0.0) when unknown
        or forgotten.  A table too full of active refusals to record key
        answers (0, when the earliest of them ends): fail closed."""

    def flight(scope: str, key: str, delta: int, now: float) -> int:
        """Add delta (+1 / -1) to the attempts of key being checked now,
        atomically across workers; returns the new number."""

    def add_failure(scope: str, key: str, now: float) -> int:
        """Count one failure; returns the new count."""

    def refuse(scope: str, key: str, until: float) -> None:
        """Refuse key outright until `until`."""

    def reset(scope: str, key: str) -> None:
        """Forget key (a successful login)."""

    def trust(pair: str, until: float, now: float) -> None:
        """The pair (client address and account) logged in successfully:
        its owner is not slowed by address or account counts until `until`."""

    def trusted(pair: str, now: float) -> bool:
        """Is the pair trusted now?"""
