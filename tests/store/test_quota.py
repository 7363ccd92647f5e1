# -*- test-case-name: tests.store.test_quota -*-
"""Quota: usage kept current by every change; OverQuota from append, deliver
and copy; per-user limits from the directory, else [limits]."""

from __future__ import annotations

import os

import pytest

from tests.store.conftest import SyncStore, result_of
from xmail.store.interfaces import OverQuota

MESSAGE = b"Subject: q\r\n\r\n" + b"x" * 86 + b"\r\n"  # 102 octets


def test_usage_follows_every_change(sync: SyncStore) -> None:
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    for _ in range(3):
        result_of(inbox.append(MESSAGE))
    assert (mailbox.quota().bytes_used, mailbox.quota().messages_used) == (3 * len(MESSAGE), 3)
    result_of(inbox.copy([1], "Archive"))
    assert mailbox.quota().messages_used == 4
    result_of(inbox.move([2], "Archive"))
    assert mailbox.quota().messages_used == 4
    result_of(inbox.expunge([3]))  # into Recycle: still on disk
    assert mailbox.quota().messages_used == 4
    recycle = mailbox.folder("Recycle")
    result_of(recycle.expunge([r.uid for r in recycle.records()]))
    assert (mailbox.quota().bytes_used, mailbox.quota().messages_used) == (3 * len(MESSAGE), 3)
    assert (mailbox.quota().bytes_limit, mailbox.quota().messages_limit) == (0, 50000)


def test_settings_limits_apply(tmp_path) -> None:
    store = SyncStore(str(tmp_path / "d"), quota_messages=2)
    try:
        mailbox = store.mailbox()
        inbox = mailbox.folder("INBOX")
        result_of(inbox.append(MESSAGE))
        result_of(store.store.deliver("alice@example.com", MESSAGE))
        with pytest.raises(OverQuota) as info:
            result_of(inbox.append(MESSAGE))
        assert not info.value.permanent
        with pytest.raises(OverQuota):
            result_of(store.store.deliver("alice@example.com", MESSAGE))
        with pytest.raises(OverQuota):
            result_of(inbox.copy([1], "Archive"))
        # Moving does not grow the mailbox.
        result_of(inbox.move([1], "Archive"))
        assert len(os.listdir(os.path.join(mailbox.root, "cur"))) == 1
        assert mailbox.quota().messages_used == 2
    finally:
        store.close()


def test_directory_limits_override_and_permanent_when_message_alone_is_too_big(sync: SyncStore) -> None:
    sync.directory.quotas["alice@example.com"] = (250, None)
    mailbox = sync.mailbox()
    inbox = mailbox.folder("INBOX")
    result_of(inbox.append(MESSAGE))
    result_of(inbox.append(MESSAGE))
    with pytest.raises(OverQuota) as info:
        result_of(inbox.append(MESSAGE))
    assert not info.value.permanent
    with pytest.raises(OverQuota) as info:
        result_of(inbox.append(b"x" * 300))
    assert info.value.permanent
    assert mailbox.quota().bytes_limit == 250
    assert sorted(os.listdir(os.path.join(mailbox.root, "tmp"))) == []
    assert len(os.listdir(os.path.join(mailbox.root, "cur"))) == 2
    sync.directory.quotas["alice@example.com"] = (0, None)  # 0 = unlimited
    result_of(inbox.append(b"x" * 300))
