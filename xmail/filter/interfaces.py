# -*- test-case-name: tests.filter.test_pipeline -*-
"""The delivery pipeline as the SMTP side sees it (issue 17).

MX and submission hand every message, once its content is spooled, to one
pipeline of named stages (list checks, SPF/DKIM/DMARC/ARC, virus and spam
scanners; later filter rules, approval holds, the journal).  Each stage
reads the `Transaction`, records what it found in the shared `Review` and
may decide; the pipeline yields one `Verdict` plus what delivery needs:
header fields to prepend (Authentication-Results, X-Spam-*) and, per local
recipient, the folder (INBOX or Junk) or a discard.

These types sit on the store/auth floor, like the queue's interface: the
SMTP protocol builds a Transaction and reads a Review without importing
the pipeline (xmail.filter), which the service builds and hands over in
the context.
"""

from __future__ import annotations

import enum
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import IO, Any

from zope.interface import Attribute, Interface

from xmail.message import scan_header_section
from xmail.message.headers import HeaderSection

MX = "mx"
SUBMISSION = "submission"
JUNK_FOLDER = "Junk"  # DESIGN.md folder names: the \Junk special-use folder
# The header fields the stages read (Review.fields): read once per message.
STAGE_FIELDS = frozenset(("from", "dkim-signature", "arc-seal"))


class Action(enum.Enum):
    ACCEPT = "accept"      # delivered (each recipient to its folder)
    TEMPFAIL = "tempfail"  # 4xx: the client tries again later
    REJECT = "reject"      # 5xx: refused, nothing stored
    HOLD = "hold"          # accepted, kept in the queue until released (issue 22)


@dataclass(frozen=True, slots=True)
class Verdict:
    """The pipeline's one answer to a message (and the SMTP reply for
    TEMPFAIL / REJECT: code, RFC 3463 enhanced status, text)."""

    action: Action
    code: int = 250
    status: str = "2.0.0"
    text: str = ""
    stage: str = ""  # which stage decided (logs)

    @classmethod
    def reject(cls, text: str, *, code: int = 550, status: str = "5.7.1", stage: str = "") -> Verdict:
        return cls(Action.REJECT, code, status, text, stage)

    @classmethod
    def tempfail(cls, text: str, *, code: int = 451, status: str = "4.7.1", stage: str = "") -> Verdict:
        return cls(Action.TEMPFAIL, code, status, text, stage)


ACCEPT = Verdict(Action.ACCEPT)


@dataclass(frozen=True, slots=True)
class Recipient:
    address: str
    user: str | None  # the local account, None for a remote recipient


@dataclass(frozen=True, slots=True)
class Transaction:
    """One message under review: its envelope, the connection's facts and a
    way to stream its content (never a second copy in memory: `open()`
    reads the spool file, or the spool's own bytes for a small message)."""

    mode: str                 # MX or SUBMISSION
    id: str                   # the transaction id (Received, logs)
    client_ip: str
    helo: str
    mail_from: str            # "" for the null reverse-path
    recipients: tuple[Recipient, ...]
    user: str | None          # the authenticated submitter (SUBMISSION)
    header_section: bytes     # the message's header section, ending with the empty line
    size: int                 # content octets
    hostname: str             # our host name: the authserv-id (RFC 8601 §2.5)
    source: Callable[[], bytes | str] = field(repr=False, default=lambda: b"")

    def open(self) -> IO[bytes]:
        """The message as received (trace fields included), for streaming."""
        source = self.source()
        if isinstance(source, str):
            return open(source, "rb")
        return io.BytesIO(source)

    @property
    def opener(self) -> Callable[[], IO[bytes]]:
        """`open`, marked `in_memory` when the message is held in memory
        (FilterWork.open then skips the thread pool)."""
        if isinstance(self.source(), str):
            return self.open
        return _MemoryOpener(self.open)

    @property
    def local_users(self) -> list[str]:
        users: list[str] = []
        for r in self.recipients:
            if r.user is not None and r.user not in users:
                users.append(r.user)
        return users


class _MemoryOpener:
    in_memory = True

    def __init__(self, open_: Callable[[], IO[bytes]]):
        self._open = open_

    def __call__(self) -> IO[bytes]:
        return self._open()


@dataclass(frozen=True, slots=True)
class Filing:
    """One copy for a local recipient: its folder, IMAP flags, and whether a
    missing folder is created (Sieve fileinto :create, RFC 5490 §3.2) or
    the copy falls back to INBOX (RFC 5228 §4.1 leaves it to us)."""

    folder: str = "INBOX"
    flags: tuple[str, ...] = ()
    create: bool = False


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message the review sends on through the queue, before the 250:
    a redirect (the message itself, `data` None, with `prefix` fields in
    front) or a new message (a vacation reply, a rejection notice: `data`).
    `required`: a redirect that replaces delivery must be queued or the
    whole message fails (4xx); a vacation reply is best effort."""

    kind: str                    # "redirect", "vacation", "reject" (logs)
    mail_from: str
    recipients: tuple[str, ...]
    data: bytes | None = None
    prefix: bytes = b""
    required: bool = False


@dataclass
class Review:
    """What the stages found so far; each stage reads and adds to it."""

    transaction: Transaction
    verdict: Verdict = ACCEPT
    # Fields to prepend, each complete ("Name: value\r\n", folded as needed).
    headers: list[bytes] = field(default_factory=list)
    folders: dict[str, str] = field(default_factory=dict)  # user -> folder other than INBOX
    discarded: dict[str, str] = field(default_factory=dict)  # user -> why (not delivered, logged)
    # Filter rules (xmail.sieve): user -> the copies to store, when not the
    # one copy in folder(user); messages to send on; a submission dropped
    # as a whole (a domain rule's discard: accepted, nothing delivered).
    filings: dict[str, list[Filing]] = field(default_factory=dict)
    outgoing: list[Outgoing] = field(default_factory=list)
    dropped: str = ""
    # Findings later stages use: "spf", "dkim", "dmarc", "arc" (results),
    # "spam_score", "virus", "allowed" (sender on an allow list), ...
    facts: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)  # one line each for the mail log
    # The header section read once for every stage (DeliveryPipeline.review;
    # in the thread pool when it is big); None when a stage runs alone.
    header: HeaderSection | None = None

    def fields(self, name: str) -> list[str]:
        """The values of every `name` field (lower-case name).  Only the
        STAGE_FIELDS are kept by the one read: the reader keeps at most
        MAX_FIELDS fields, and a sender must not push From or a signature
        out of sight by padding the header with a thousand others."""
        header = self.header
        if name not in STAGE_FIELDS:
            return scan_header_section(self.transaction.header_section, frozenset((name,))).all(name)
        if header is None:
            header = self.header = scan_header_section(self.transaction.header_section, STAGE_FIELDS)
        return header.all(name)

    @property
    def final(self) -> bool:
        """A TEMPFAIL or REJECT ends the review: later stages do not run."""
        return self.verdict.action in (Action.TEMPFAIL, Action.REJECT)

    def decide(self, verdict: Verdict) -> None:
        if not self.final:
            self.verdict = verdict

    def add_header(self, name: str, value: str) -> None:
        self.headers.append(f"{name}: {value}\r\n".encode())

    def junk(self, user: str | None = None) -> None:
        """File into Junk: one local recipient, or all of them."""
        for u in [user] if user is not None else self.transaction.local_users:
            self.folders[u] = JUNK_FOLDER

    def discard(self, user: str, why: str) -> None:
        self.discarded[user] = why

    def folder(self, user: str) -> str:
        return self.folders.get(user, "INBOX")

    def copies(self, user: str) -> list[Filing]:
        """What to store for a local recipient (one or more copies)."""
        return self.filings.get(user) or [Filing(self.folder(user))]

    def prefix(self) -> bytes:
        return b"".join(self.headers)


class IDeliveryPipeline(Interface):
    stages = Attribute("the stages in order (each with .name)")

    def review(transaction: Transaction) -> Any:
        """-> Deferred[Review]; never fails: a stage's fault is handled by
        its failure policy (a TEMPFAIL verdict or an unscanned mark)."""

    def check_sender(mail_from: str, user: str) -> Verdict | None:
        """At RCPT time on MX: a refusal when the envelope sender is on the
        recipient's (or its domain's) block list, else None.  A short index
        read, safe on the reactor."""

    def bounce_target(address: str) -> str | None:
        """On MX, for a bounce (null sender) to one of our hosted domains:
        the original sender when `address` is one of our SRS addresses
        (a redirect's rewritten envelope sender, xmail.sieve.srs), the
        bounce then being sent on to it; None otherwise."""

    def check_header_section(mode: str, section: bytes) -> tuple[bytes, Verdict | None]:
        """Called once the header section is complete, while the body still
        streams in: the section as it will be stored (for MX, fields that
        forge our Authentication-Results removed, RFC 8601 §5) and a
        refusal to answer at the end of DATA, or None."""
