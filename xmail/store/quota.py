# -*- test-case-name: tests.store.test_quota -*-
"""Per-user quota: limits from the directory or [limits], usage from the index.

Usage (bytes and messages of every folder, Recycle included, because
Recycle still occupies the disk) is kept current by the index's
RecordEditor in the same transaction as each change; the check made there
is authoritative, the one made before writing a file only saves the work.
"""

from __future__ import annotations

from typing import Any

from xmail.store.interfaces import OverQuota, QuotaUsage


def limits(directory: Any, settings: Any, address: str) -> tuple[int, int]:
    """(bytes limit, messages limit); 0 is unlimited."""
    bytes_limit = settings.limits.quota_bytes
    messages_limit = settings.limits.quota_messages
    record = directory.user(address) if directory is not None else None
    if record is not None:
        if record.quota_bytes is not None:
            bytes_limit = record.quota_bytes
        if record.quota_messages is not None:
            messages_limit = record.quota_messages
    return bytes_limit, messages_limit


def usage(used: tuple[int, int] | None, limit: tuple[int, int]) -> QuotaUsage:
    used_bytes, used_messages = used or (0, 0)
    return QuotaUsage(used_bytes, used_messages, limit[0], limit[1])


def check(used: tuple[int, int] | None, limit: tuple[int, int], add_bytes: int, add_messages: int) -> None:
    """Raise OverQuota when adding would exceed a limit.

    Permanent when the addition alone exceeds the limit (no expunge can make
    room: SMTP 552 5.2.2); temporary otherwise (452 4.2.2).
    """
    used_bytes, used_messages = used or (0, 0)
    bytes_limit, messages_limit = limit
    if bytes_limit and used_bytes + add_bytes > bytes_limit:
        raise OverQuota(f"mailbox size limit of {bytes_limit} bytes exceeded",
                        permanent=add_bytes > bytes_limit)
    if messages_limit and used_messages + add_messages > messages_limit:
        raise OverQuota(f"mailbox limit of {messages_limit} messages exceeded",
                        permanent=add_messages > messages_limit)
