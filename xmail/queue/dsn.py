# -*- test-case-name: tests.queue.test_dsn -*-
"""Delivery status notifications: RFC 3464 reports, RFC 3461 rules.

`build_dsn` returns the bytes of a multipart/report message (CRLF line
endings) that the queue sends from the null reverse-path, so a DSN is never
answered with another DSN (RFC 3461 §6.2, RFC 5321 §4.5.5).  It reads the
original message file, so it is called in a thread.
"""

from __future__ import annotations

import email.utils
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

# The text of a DSN names at most this much of the original when the sender
# asked for headers only or did not ask (RFC 3461 §4.3 leaves that to us).
MAX_FULL_RETURN = 1024 * 1024
MAX_HEADER_RETURN = 256 * 1024

ACTIONS = ("failed", "delayed", "delivered", "relayed", "expanded")


@dataclass(frozen=True, slots=True)
class RecipientReport:
    """One recipient block of message/delivery-status (RFC 3464 §2.3)."""

    address: str
    action: str  # one of ACTIONS
    status: str  # RFC 3463 code, "5.1.1"
    orcpt: str | None = None  # ORCPT as "addr-type;address", xtext already decoded
    diagnostic: str | None = None  # the remote reply, "550 5.1.1 no such user"
    remote_mta: str | None = None
    last_attempt: float | None = None
    will_retry_until: float | None = None


def _clean(value: str) -> str:
    """No CR/LF may reach a header field from remote text."""
    return re.sub(r"[\r\n\t]+", " ", value).strip()


def _date(ts: float) -> str:
    return email.utils.formatdate(ts, localtime=False, usegmt=True)


def _address_type(address: str) -> str:
    # RFC 6533 §3: "utf-8" address type for internationalized addresses.
    return "rfc822" if address.isascii() else "utf-8"


_SUBJECTS = {
    "failed": "Undelivered Mail Returned to Sender",
    "delayed": "Delayed Mail (still being retried)",
    "delivered": "Successful Mail Delivery Report",
    "relayed": "Mail Relayed Report",
    "expanded": "Mail Delivery Report",
}

_EXPLANATIONS = {
    "failed": "Your message could not be delivered to one or more recipients.\r\n"
    "It has been returned; the reasons are below.",
    "delayed": "Your message has not been delivered yet to one or more recipients.\r\n"
    "Delivery will be retried; you do not need to send it again.",
    "delivered": "Your message was delivered to the recipients below.",
    "relayed": "Your message was passed on to a server that does not report delivery\r\n"
    "status; you will not hear more about these recipients.",
    "expanded": "Your message was delivered to the recipients below.",
}


def _read_original(path: str, full: bool, size_limit: int | None) -> tuple[bytes, bool]:
    """(content, is_full): the whole message, or its header section."""
    with open(path, "rb") as f:
        if full:
            data = f.read() if size_limit is None else f.read(size_limit + 1)
            if size_limit is None or len(data) <= size_limit:
                return data, True
            f.seek(0)
        head = f.read(MAX_HEADER_RETURN)
    end = head.find(b"\r\n\r\n")
    if end >= 0:
        head = head[: end + 2]
    elif len(head) == MAX_HEADER_RETURN:
        head = head[: head.rfind(b"\r\n") + 2]
    return head, False


def build_dsn(
    *,
    reporting_mta: str,
    sender: str,
    recipients: Sequence[RecipientReport],
    original_path: str | None,
    arrival: float,
    now: float,
    envid: str | None = None,
    ret: str | None = None,
) -> bytes:
    """The DSN for `recipients` of one queued message, to `sender`."""
    if not recipients:
        raise ValueError("a DSN needs at least one recipient")
    action = recipients[0].action
    boundary = f"=_xmail_{secrets.token_hex(12)}"
    message_id = f"<{secrets.token_hex(12)}.dsn@{reporting_mta}>"
    utf8 = not sender.isascii() or any(not r.address.isascii() for r in recipients)
    status_type = "message/global-delivery-status" if utf8 else "message/delivery-status"

    # RFC 3461 §4.3: RET=FULL returns the whole message on failure, RET=HDRS
    # only its header; delay and success reports carry headers only.
    full = action == "failed" and (ret or "").upper() != "HDRS"
    size_limit = None if (ret or "").upper() == "FULL" else MAX_FULL_RETURN
    original, is_full = (b"", False)
    if original_path is not None:
        original, is_full = _read_original(original_path, full, size_limit)

    lines: list[str] = [
        f"From: Mail Delivery System <MAILER-DAEMON@{reporting_mta}>",
        f"To: <{sender}>",
        f"Subject: {_SUBJECTS.get(action, 'Delivery Status Notification')}",
        f"Date: {_date(now)}",
        f"Message-ID: {message_id}",
        # RFC 3834 §5: automatic responses are marked so nobody replies to them.
        "Auto-Submitted: auto-replied",
        "MIME-Version: 1.0",
        f'Content-Type: multipart/report; report-type=delivery-status; boundary="{boundary}"',
        "",
        "This is a MIME-encapsulated delivery status notification (RFC 3464).",
        "",
        f"--{boundary}",
        "Content-Type: text/plain; charset=utf-8",
        "Content-Transfer-Encoding: 8bit",
        "",
        f"This is the mail system at {reporting_mta}.",
        "",
        _EXPLANATIONS.get(action, ""),
        "",
    ]
    for r in recipients:
        reason = _clean(r.diagnostic) if r.diagnostic else f"status {r.status}"
        via = f" (host {_clean(r.remote_mta)})" if r.remote_mta else ""
        lines.append(f"<{r.address}>{via}: {reason}")
    lines += ["", f"--{boundary}", f"Content-Type: {status_type}", ""]

    # RFC 3464 §2.2: per-message fields.
    lines.append(f"Reporting-MTA: dns; {reporting_mta}")
    if envid:
        lines.append(f"Original-Envelope-Id: {_clean(envid)}")
    lines.append(f"Arrival-Date: {_date(arrival)}")
    # RFC 3464 §2.3: one block per recipient, blocks separated by a blank line.
    for r in recipients:
        lines.append("")
        if r.orcpt:
            kind, _, addr = r.orcpt.partition(";")
            if addr:
                lines.append(f"Original-Recipient: {_clean(kind)}; {_clean(addr)}")
        lines.append(f"Final-Recipient: {_address_type(r.address)}; {_clean(r.address)}")
        lines.append(f"Action: {r.action}")
        lines.append(f"Status: {r.status}")
        if r.remote_mta:
            lines.append(f"Remote-MTA: dns; {_clean(r.remote_mta)}")
        if r.diagnostic:
            # RFC 3464 §2.3.6: "smtp" only for a reply the remote server
            # sent; our own explanations (connect failed, gave up) get ours.
            kind = "smtp" if re.match(r"[245]\d\d(?:[ -]|$)", r.diagnostic) else "X-xmail"
            lines.append(f"Diagnostic-Code: {kind}; {_clean(r.diagnostic)}")
        if r.last_attempt is not None:
            lines.append(f"Last-Attempt-Date: {_date(r.last_attempt)}")
        if r.will_retry_until is not None:
            lines.append(f"Will-Retry-Until: {_date(r.will_retry_until)}")
    lines.append("")

    head = "\r\n".join(lines).encode("utf-8") + b"\r\n"
    tail = f"--{boundary}--\r\n".encode()
    if original_path is None:
        return head + tail
    if is_full:
        part_type = "message/global" if not original.isascii() and utf8 else "message/rfc822"
    else:
        part_type = "message/global-headers" if utf8 else "text/rfc822-headers"
    encoding = "7bit" if original.isascii() else "8bit"
    part = (
        f"--{boundary}\r\nContent-Type: {part_type}\r\n"
        f"Content-Description: {'Undelivered message' if is_full else 'Message headers'}\r\n"
        f"Content-Transfer-Encoding: {encoding}\r\n\r\n"
    ).encode()
    if not original.endswith(b"\r\n"):
        original += b"\r\n"
    return head + part + original + b"\r\n" + tail


def allows(notify: Sequence[str], action: str) -> bool:
    """RFC 3461 §4.1: NOTIFY=NEVER silences every DSN; without NOTIFY we
    report failures and delays (the common default), never successes."""
    wanted = {n.upper() for n in notify}
    if "NEVER" in wanted:
        return False
    if not wanted:
        wanted = {"FAILURE", "DELAY"}
    key = {"failed": "FAILURE", "delayed": "DELAY", "delivered": "SUCCESS", "relayed": "SUCCESS"}
    return key.get(action, "") in wanted
