# -*- test-case-name: tests.auth.test_portal -*-
"""The realm and the one Portal every protocol logs in through.

`make_portal` builds it in CoreService.startService; a protocol calls
``portal.login(login_credentials(name, password, client_ip=..., protocol=...),
None, IMailAccount)`` (xmail.auth.credentials; a plain UsernamePassword works
too, throttled by account only) and
gets ``(IMailAccount, MailAccount, logout)``.  The user's mailbox is
provisioned (Maildir tree and default folders) before the avatar is handed
out, so a protocol never sees a user without folders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from twisted.cred.portal import IRealm, Portal
from twisted.internet import defer
from zope.interface import implementer

from xmail.auth.checker import DirectoryChecker
from xmail.auth.interfaces import IFailureCounts, IMailAccount, UserRecord
from xmail.auth.throttle import LoginThrottle, ThrottledChecker, ThrottlePolicy
from xmail.config import Settings


@implementer(IMailAccount)
@dataclass(frozen=True)
class MailAccount:
    address: str
    mailbox: Any  # xmail.store.interfaces.IMailbox
    record: UserRecord


def _logout() -> None:
    """Sessions release their own resources; nothing is held per avatar."""


@implementer(IRealm)
class MailRealm:
    def __init__(self, directory: Any, store: Any):
        self.directory = directory
        self.store = store

    def requestAvatar(self, avatarId: Any, mind: Any, *interfaces: Any) -> defer.Deferred[Any]:
        if IMailAccount not in interfaces:
            return defer.fail(NotImplementedError("xmail only hands out IMailAccount avatars"))
        address = avatarId.decode("utf-8") if isinstance(avatarId, bytes) else avatarId
        record = self.directory.user(address)
        if record is None:  # removed between the check and now
            from twisted.cred.error import UnauthorizedLogin

            return defer.fail(UnauthorizedLogin("invalid credentials"))
        d = defer.maybeDeferred(self.store.provision, address)
        d.addCallback(lambda mailbox: (IMailAccount, MailAccount(address, mailbox, record), _logout))
        return d


def make_portal(directory: Any, store: Any, settings: Settings, reactor: Any, *,
                failures: IFailureCounts | None = None) -> Portal:
    """The Portal shared by all protocols (one checker, one verifier pool),
    with brute-force throttling in front of the password check.
    failures: where the throttle counts (the workers' shared table); None:
    in this process's memory."""
    checker = DirectoryChecker(directory, reactor)
    throttle = LoginThrottle(reactor, ThrottlePolicy.from_limits(settings.limits), failures)
    portal = Portal(MailRealm(directory, store), [ThrottledChecker(checker, throttle, directory.resolve)])
    portal.checker = checker  # for tests and stats
    portal.throttle = throttle
    return portal
