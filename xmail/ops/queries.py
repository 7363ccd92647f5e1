# -*- test-case-name: tests.ops.test_cli, tests.ops.test_server -*-
"""Queries over the audit logs and statistics: filters and rows.

Pure functions over records (dicts from xmail.ops.logfiles) so that the CLI,
tests and any later web page share them.  A row is a list of plain values;
the CLI prints it tab-separated or as CSV.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Iterator
from typing import Any

from xmail.ops.logfiles import TRAFFIC_COLUMNS, Traffic

LOGIN_COLUMNS = ("time", "event", "account", "protocol", "ip", "method", "result")
MAIL_COLUMNS = ("time", "event", "account", "sender", "recipients", "size", "folder", "message_id",
                "result", "details")
ADMIN_COLUMNS = ("time", "operator", "account", "result", "command")
USAGE_COLUMNS = ("address", "bytes_used", "messages_used", "bytes_limit", "messages_limit",
                 "bytes_percent", "messages_percent")

_MAIL_KNOWN = {"ts", "event", "account", "user", "sender", "recipients", "size", "folder", "message_id",
               "result"}
_ADDRESS_FIELDS = ("account", "user", "sender", "recipients", "local_recipients", "remote_recipients")
_RELATIVE = re.compile(r"(\d+)([dhm])")


class QueryError(ValueError):
    """A filter value cannot be used; the message says why."""


def parse_since(text: str, now: float) -> float:
    """A time: YYYY-MM-DD (UTC midnight), an ISO date-time (UTC unless it
    names a zone), or a span back from now: 7d, 12h, 30m."""
    text = text.strip()
    match = _RELATIVE.fullmatch(text)
    if match:
        amount, unit = int(match[1]), match[2]
        return now - amount * {"d": 86400, "h": 3600, "m": 60}[unit]
    try:
        when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise QueryError(f"not a date: {text!r} (YYYY-MM-DD, YYYY-MM-DDTHH:MM, 7d, 12h)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    return when.timestamp()


def iso(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _domain(address: str) -> str:
    return address.rpartition("@")[2].lower()


def _addresses(record: dict[str, Any]) -> set[str]:
    found = set()
    for name in _ADDRESS_FIELDS:
        value = record.get(name)
        if isinstance(value, str):
            found.update(a.strip().lower() for a in value.split(",") if a.strip())
    return found


def matches(kind: str, record: dict[str, Any], user: str | None, domain: str | None) -> bool:
    user = user.strip().lower() if user else None
    domain = domain.strip().lower().lstrip("@") if domain else None
    if kind == "admin":
        words = str(record.get("command", "")).lower().split()
        if user and str(record.get("operator", "")).lower() != user:
            return False
        return not domain or any(w == domain or _domain(w) == domain and "@" in w for w in words)
    if kind == "login":
        addresses = {str(record.get("account", "")).lower()}
    else:
        addresses = _addresses(record)
    if user and user not in addresses:
        return False
    return not domain or any(_domain(a) == domain for a in addresses if "@" in a)


def login_row(record: dict[str, Any]) -> list[Any]:
    return [iso(record["ts"]), record.get("event"), record.get("account"), record.get("protocol"),
            record.get("ip"), record.get("method"), record.get("result")]


def mail_row(record: dict[str, Any]) -> list[Any]:
    details = " ".join(f"{k}={v}" for k, v in sorted(record.items()) if k not in _MAIL_KNOWN)
    return [iso(record["ts"]), record.get("event"), record.get("account") or record.get("user"),
            record.get("sender"), record.get("recipients"), record.get("size"), record.get("folder"),
            record.get("message_id"), record.get("result"), details]


def admin_row(record: dict[str, Any]) -> list[Any]:
    return [iso(record["ts"]), record.get("operator"), record.get("account"), record.get("result"),
            record.get("command")]


LOGS = {
    "logins": ("login", LOGIN_COLUMNS, login_row),
    "mail": ("mail", MAIL_COLUMNS, mail_row),
    "admin": ("admin", ADMIN_COLUMNS, admin_row),
}


def log_rows(kind: str, records: Iterable[dict[str, Any]], user: str | None,
             domain: str | None) -> Iterator[list[Any]]:
    file_kind, _columns, row = LOGS[kind]
    for record in records:
        if matches(file_kind, record, user, domain):
            yield row(record)


def traffic_rows(traffic: dict[tuple[str, str], Traffic], user: str | None,
                 domain: str | None) -> Iterator[list[Any]]:
    user = user.strip().lower() if user else None
    domain = domain.strip().lower().lstrip("@") if domain else None
    for (day, address), counts in sorted(traffic.items()):
        if user and address != user:
            continue
        if domain and _domain(address) != domain:
            continue
        yield [day, address, *counts.values()]


TRAFFIC_HEADER = ("day", "user", *TRAFFIC_COLUMNS)


def _percent(used: int, limit: int) -> str | None:
    if not limit:
        return None  # unlimited
    return f"{100.0 * used / limit:.1f}"


def usage_row(address: str, usage: Any) -> list[Any]:
    return [address, usage.bytes_used, usage.messages_used, usage.bytes_limit, usage.messages_limit,
            _percent(usage.bytes_used, usage.bytes_limit),
            _percent(usage.messages_used, usage.messages_limit)]
