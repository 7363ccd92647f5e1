# -*- test-case-name: tests.sieve.test_vacation -*-
"""Vacation replies (RFC 5230, RFC 3834): when not to answer, whom we
answered already, and the reply itself.

- `refusal(...)`: the reason no reply goes out (RFC 5230 §4.5, RFC 3834
  §2): the sender is null, MAILER-DAEMON-like or a list's; the message is
  Auto-Submitted (anything but "no"), from a list (List-Id, List-*),
  bulk/list/junk Precedence; or none of the user's addresses is a visible
  recipient (To, Cc, Bcc, Resent-To/Cc/Bcc), so the user was Bcc'd or the
  mail came through a list.
- `VacationMemory`: "once per sender per :days" (RFC 5230 §4.1), kept in
  the index (``sieve.vacation``: key ``user NUL handle NUL sender``,
  value the time until which no other reply goes to that sender).
- `compose_reply(...)`: the reply's bytes: `Auto-Submitted: auto-replied`
  (RFC 3834 §5), `In-Reply-To` and `References` (RFC 5230 §5.8), the
  subject `Auto: <original>` unless :subject (§5.6), From one of the
  user's own addresses (§5.5), sent with a null envelope sender (RFC 3834
  §3.3) so that nothing answers it back.
"""

from __future__ import annotations

import email.utils
import re
import time
from collections.abc import Callable, Iterable
from email.header import Header
from typing import Any

from xmail.db.environment import IndexEnvironment
from xmail.message import mailboxes
from xmail.message.headers import HeaderSection, decode_words

VACATION_DB = "sieve.vacation"
# RFC 3834 §2: senders that are programs, not people.
_PROGRAM_SENDER = re.compile(r"^(?:mailer-daemon|postmaster|listserv|majordomo|owner-.*|.*-request|.*-owner"
                             r"|no-?reply|.*-bounces?)$", re.IGNORECASE)
_LIST_FIELDS = ("list-id", "list-help", "list-unsubscribe", "list-subscribe", "list-post", "list-owner",
                "list-archive")
RECIPIENT_FIELDS = ("to", "cc", "bcc", "resent-to", "resent-cc", "resent-bcc")
MAX_SUBJECT = 256
MAX_REFERENCES = 20


def refusal(header: HeaderSection, mail_from: str, own: Callable[[str], bool],
            extra_addresses: Iterable[str] = ()) -> str | None:
    """Why no vacation reply may go out (None: one may).  `own(address)`:
    is this address one of the user's (their address, aliases, alias
    domains); `extra_addresses`: the script's :addresses."""
    if not mail_from:
        return "null sender"
    local = mail_from.rpartition("@")[0]
    if _PROGRAM_SENDER.match(local):
        return f"sender {mail_from} is a program"
    auto = header.first("auto-submitted")
    if auto is not None and auto.split(";")[0].strip().lower() != "no":
        return "Auto-Submitted message"
    for name in _LIST_FIELDS:
        if header.first(name) is not None:
            return "list message"
    precedence = (header.first("precedence") or "").strip().lower()
    if precedence in ("bulk", "list", "junk"):
        return f"Precedence: {precedence}"
    extra = {a.lower() for a in extra_addresses}
    for name in RECIPIENT_FIELDS:
        for value in header.all(name):
            for address in mailboxes(value):
                if address.lower() in extra or own(address):
                    return None
    return "the user is not a visible recipient"


class VacationMemory:
    """Who got a reply, until when (RFC 5230 §4.1 :days, RFC 6131 :seconds)."""

    def __init__(self, env: IndexEnvironment, clock: Callable[[], float] = time.time):
        self.env = env
        self.clock = clock
        self._db = env.db(VACATION_DB)

    @staticmethod
    def _key(user: str, handle: str, sender: str) -> bytes:
        # The handle can be long (RFC 5230 §4.2 defaults it to the reply's
        # text): its digest keeps the key under LMDB's 511-byte limit.
        import hashlib
        digest = hashlib.sha256(handle.encode()).hexdigest()[:32]
        return f"{user}\0{digest}\0{sender.lower()[:320]}".encode()

    def replied(self, user: str, handle: str, sender: str) -> bool:
        """A reply went to this sender and its period has not run out."""
        with self.env.read() as txn:
            value = txn.get(self._key(user, handle, sender), db=self._db)
        return value is not None and float(value) > self.clock()

    def remember(self, user: str, handle: str, sender: str, seconds: int) -> Any:
        """-> Deferred (the index writer): no reply until now + seconds.
        Not durable: a crash may let one more reply out, never lose mail."""
        key = self._key(user, handle, sender)
        until = str(self.clock() + seconds).encode()
        return self.env.write(lambda txn: txn.put(key, until, db=self._db), durable=False)


def _header_value(text: str) -> str:
    """An unstructured field value: RFC 2047 encoded when not ASCII."""
    try:
        text.encode("ascii")
        return text
    except UnicodeEncodeError:
        return Header(text, "utf-8").encode()


def compose_reply(*, user: str, from_: str | None, to: str, subject: str | None, reason: str,
                  original: HeaderSection, hostname: str, mime: bool = False,
                  now: float | None = None) -> bytes:
    """The vacation reply as bytes (CRLF lines)."""
    original_subject = decode_words(original.first("subject") or "")[:MAX_SUBJECT]
    if subject is None:
        subject = f"Auto: {original_subject}" if original_subject else "Auto: (no subject)"
    subject = " ".join(subject.split())[:MAX_SUBJECT]
    fields = [
        ("From", from_ or user),
        ("To", to),
        ("Subject", _header_value(subject)),
        ("Date", email.utils.formatdate(now, localtime=False)),
        ("Message-ID", email.utils.make_msgid(domain=hostname)),
        ("Auto-Submitted", "auto-replied (vacation)"),
    ]
    message_id = (original.first("message-id") or "").strip()
    if message_id.startswith("<") and message_id.endswith(">") and len(message_id) < 1000:
        references = (original.first("references") or "").split()[-MAX_REFERENCES:]
        fields.append(("In-Reply-To", message_id))
        fields.append(("References", " ".join([*references, message_id])))
    lines = [f"{name}: {value}" for name, value in fields]
    if mime:
        # RFC 5230 §5.7 :mime: the reason is a MIME entity (headers + body).
        body = reason.replace("\r\n", "\n").replace("\n", "\r\n")
        lines.append("MIME-Version: 1.0")
        return ("\r\n".join(lines) + "\r\n" + body + ("" if body.endswith("\r\n") else "\r\n")).encode()
    lines += ["MIME-Version: 1.0", "Content-Type: text/plain; charset=utf-8",
              "Content-Transfer-Encoding: 8bit"]
    body = reason.replace("\r\n", "\n").replace("\n", "\r\n")
    return ("\r\n".join(lines) + "\r\n\r\n" + body + ("" if body.endswith("\r\n") else "\r\n")).encode()
