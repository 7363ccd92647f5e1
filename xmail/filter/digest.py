# -*- test-case-name: tests.filter.test_digest -*-
"""The per-user spam digest (issue 17).

`xmailctl user set U spam_digest=off|daily|weekly`.  A user whose digest is
due gets one message in INBOX listing what arrived in Junk since the last
digest (date, sender, subject; at most MAX_ITEMS lines, then a count), so
a legitimate message filed as spam is noticed without opening Junk.
Nothing is sent when there is nothing to list.  The time of the last
digest is the user setting `spam_digest_last` (seconds since the epoch):
the leader's hourly run and `xmailctl spam digest` see the same state, and
a restart never sends a digest twice.  The first digest covers one period
back from the moment it became due.

The listing reads the index (Junk's records and cached header fields),
never the message files; it runs in the pipeline's thread pool.
"""

from __future__ import annotations

import email.utils
import time
from collections.abc import Callable
from email.header import Header
from typing import Any

from twisted.internet import defer
from twisted.logger import Logger

from xmail.filter.interfaces import JUNK_FOLDER
from xmail.message import decode_words
from xmail.store.interfaces import NoSuchFolder

PERIODS = {"daily": 86400.0, "weekly": 7 * 86400.0}
SETTING = "spam_digest"
LAST = "spam_digest_last"
MAX_ITEMS = 200
RUN_INTERVAL = 3600.0  # the leader looks for due digests hourly


def junk_folder(store: Any, user: str) -> Any:
    """The user's Junk folder, or None (never received mail, or no Junk);
    on the reactor thread, where the store hands out its folder objects."""
    try:
        return store.mailbox(user).folder(JUNK_FOLDER)
    except NoSuchFolder:
        return None


def junk_since(folder: Any, since: float) -> list[tuple[float, str, str]]:
    """(internal date, sender, subject) of the folder's messages that arrived
    after `since`, oldest first (blocking index reads: run in a thread)."""
    if folder is None:
        return []
    records = [r for r in folder.records() if r.internaldate > since]
    headers = dict(folder.headers_many([r.uid for r in records[-MAX_ITEMS:]]))
    items = []
    for record in records:
        fields = headers.get(record.uid, {})
        items.append((record.internaldate, _text(fields.get("from", "")), _text(fields.get("subject", ""))))
    return items


def _text(value: str) -> str:
    # Header values are client data: one line, bounded, encoded words decoded.
    text = " ".join(decode_words(value).split())
    return text[:120] + ("..." if len(text) > 120 else "")


def digest_message(user: str, hostname: str, items: list[tuple[float, str, str]], now: float) -> bytes:
    """The digest as an RFC 5322 message (UTF-8 text, RFC 2047 subject)."""
    shown = items[-MAX_ITEMS:]
    lines = [f"{len(items)} message(s) arrived in your Junk folder since the last digest.",
             f"{len(items)} 封邮件自上次摘要后进入了垃圾邮件文件夹。",
             "If one of them is not spam, move it back to your Inbox: that also teaches the filter.",
             ""]
    for date, sender, subject in shown:
        stamp = time.strftime("%Y-%m-%d %H:%M", time.gmtime(date))
        lines.append(f"{stamp} UTC  {sender or '(no sender)'}")
        lines.append(f"    {subject or '(no subject)'}")
    if len(items) > len(shown):
        lines.append(f"... and {len(items) - len(shown)} more in Junk.")
    subject = Header(f"Junk digest / 垃圾邮件摘要: {len(items)}", "utf-8").encode()
    head = (f"From: Mail filter <postmaster@{hostname}>\r\n"
            f"To: <{user}>\r\n"
            f"Subject: {subject}\r\n"
            f"Date: {email.utils.formatdate(now)}\r\n"
            f"Message-ID: {email.utils.make_msgid('digest', domain=hostname)}\r\n"
            "Auto-Submitted: auto-generated\r\n"  # RFC 3834 §5: never auto-replied to
            "MIME-Version: 1.0\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n")
    return head.encode() + "\r\n".join(lines).encode("utf-8") + b"\r\n"


class SpamDigest:
    _log = Logger()

    def __init__(self, store: Any, directory: Any, hostname: str, run: Callable[..., Any],
                 clock: Callable[[], float] = time.time):
        """run(fn, *args) -> Deferred: where blocking reads and writes go
        (FilterWork.run in the daemon; a synchronous call in tests)."""
        self.store = store
        self.directory = directory
        self.hostname = hostname
        self.run = run
        self.clock = clock

    @defer.inlineCallbacks
    def send_due(self, only: str | None = None, force: bool = False) -> Any:
        """-> Deferred[list[str]]: the users a digest was delivered to."""
        now = self.clock()
        users = yield self.run(self.directory.list_users)
        sent = []
        for record in users:
            if only is not None and record.address != only:
                continue
            period = PERIODS.get(record.settings.get(SETTING, "off"))
            if period is None:
                continue
            try:
                last = float(record.settings.get(LAST, "") or now - period)
            except ValueError:
                last = now - period
            if not force and now - last < period:
                continue
            try:
                items = yield self.run(junk_since, junk_folder(self.store, record.address), last)
                if items:
                    yield self.store.deliver(record.address,
                                             digest_message(record.address, self.hostname, items, now))
                    sent.append(record.address)
                yield self.run(self.directory.set_setting, record.address, LAST, repr(now))
            except Exception:
                self._log.failure("spam digest for {user} failed", user=record.address)
        return sent
