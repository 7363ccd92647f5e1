# -*- test-case-name: tests.store.test_service_store -*-
"""The store inside the real service (conftest `server`): provisioned users,
delivery through the daemon's threads, the hourly Recycle purge hook."""

from __future__ import annotations

import os

from xmail.store.interfaces import IMailbox


def test_server_store_delivers_and_lists(server) -> None:
    store = server.ctx.store
    mailbox = server.mailbox("alice@example.com")
    assert IMailbox.providedBy(mailbox)
    assert [f.name for f in mailbox.list_folders()][:1] == ["INBOX"]
    result = server.call(store.deliver, "alice@example.com", b"Subject: via service\n\nhello\n")
    inbox = server.call(mailbox.folder, "INBOX")
    assert [r.uid for r in server.call(inbox.records)] == [result.uid]
    path = server.call(inbox.message_path, result.uid)
    assert path.startswith(os.path.join(server.settings.data_dir, "mail", "example.com", "alice", "cur"))
    assert server.call(store.purge_expired) == 0
