# -*- test-case-name: tests.protocols.test_imap_quota -*-
"""QUOTA (RFC 9208): GETQUOTA, GETQUOTAROOT and SETQUOTA.

Every user has one quota root, "" (the whole mailbox, Recycle included),
with the STORAGE (units of 1024 octets) and MESSAGE resources of
IMailbox.quota(): the limits `xmailctl user set ADDRESS quota_bytes=N`
and [limits] give, the usage the index keeps.  The store enforces them
(OverQuota -> NO [OVERQUOTA] in session.py); clients only read them here.
"""

from __future__ import annotations

from xmail.protocols.imap.commands.mailbox import open_folder
from xmail.protocols.imap.grammar import Request
from xmail.protocols.imap.response import mailbox as wire_mailbox
from xmail.protocols.imap.response import quoted
from xmail.protocols.imap.session import AUTH, No, Session, command

ROOT = ""


def _kib(octets: int) -> int:
    return (octets + 1023) // 1024


def quota_line(session: Session) -> bytes:
    # RFC 9208 §5.1: quota-response = "QUOTA" SP astring SP quota-list;
    # a resource without a limit is not listed.
    usage = session.mailbox.quota()
    resources = []
    if usage.bytes_limit:
        resources.append(b"STORAGE %d %d" % (_kib(usage.bytes_used), _kib(usage.bytes_limit)))
    if usage.messages_limit:
        resources.append(b"MESSAGE %d %d" % (usage.messages_used, usage.messages_limit))
    return b"QUOTA " + quoted(ROOT.encode()) + b" (" + b" ".join(resources) + b")"


@command("GETQUOTA", AUTH)
async def getquota(session: Session, request: Request) -> str:
    if request.args != ROOT:
        raise No("no such quota root", "NONEXISTENT")  # RFC 9208 §4.1.1
    session.untagged(quota_line(session))
    return "GETQUOTA completed"


@command("GETQUOTAROOT", AUTH)
async def getquotaroot(session: Session, request: Request) -> str:
    # RFC 9208 §4.1.2: the mailbox's roots, then each root's QUOTA.
    folder = open_folder(session, request.args)
    session.untagged(b"QUOTAROOT " + wire_mailbox(folder.name, session.rev2) + b" " + quoted(ROOT.encode()))
    session.untagged(quota_line(session))
    return "GETQUOTAROOT completed"


@command("SETQUOTA", AUTH)
async def setquota(session: Session, request: Request) -> str:
    # RFC 9208 §4.1.3: a server may refuse; limits are the administrator's
    # (xmailctl user set ... quota_bytes=N).
    raise No("quotas are set by the administrator", "NOPERM")
