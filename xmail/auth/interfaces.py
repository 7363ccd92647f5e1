"""Users and login as the protocols see them.

Protocols authenticate through the shared `twisted.cred` Portal
(`portal.login(UsernamePassword(address, password), None, IMailAccount)`,
name and password as bytes or str) and look up recipients and senders
through IDirectory.  The login Deferred fires with
(IMailAccount, avatar, logout) or fails with UnauthorizedLogin (wrong name or
password; AccountDisabled is a subclass) or LoginUnavailable (try later).
Addresses are case-insensitive and handled lowercase.
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
