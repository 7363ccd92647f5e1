"""The spam digest: due times, content, nothing sent for an empty Junk."""

from __future__ import annotations

import email
import email.header
from typing import Any

from twisted.internet import defer

from tests.store.conftest import SyncStore, result_of
from xmail.auth.directory import Directory
from xmail.filter.digest import LAST, PERIODS, SpamDigest
from xmail.store.interfaces import NoSuchFolder

BOB = "bob@example.com"


def inbox_messages(store: Any, user: str) -> list[bytes]:
    try:
        folder = store.mailbox(user).folder("INBOX")
    except NoSuchFolder:
        return []  # never received anything
    out = []
    for record in folder.records():
        with open(folder.message_path(record.uid), "rb") as f:
            out.append(f.read())
    return out


def test_digest_lists_new_junk_once_per_period(tmp_path: Any) -> None:
    sync = SyncStore(str(tmp_path / "data"))
    try:
        directory = Directory(sync.env, sync.settings)
        directory.add_domain("example.com")
        directory.add_user(BOB, password="A-long-password-1")
        directory.add_user("carol@example.com", password="A-long-password-1")
        digest = SpamDigest(sync.store, directory, "mail.example.com",
                            lambda fn, *a: defer.maybeDeferred(fn, *a), clock=sync.clock)
        junk = sync.mailbox(BOB).folder("Junk")
        spam = b"From: =?utf-8?b?5byg5Lyf?= <zw@spam.example>\r\nSubject: Cheap pills\r\n\r\nx\r\n"
        result_of(junk.append(spam, internaldate=sync.clock.now - 3600))
        assert result_of(digest.send_due()) == []  # nobody asked for one
        directory.set_setting(BOB, "spam_digest", "daily")
        directory.set_setting("carol@example.com", "spam_digest", "weekly")  # her Junk is empty

        assert result_of(digest.send_due()) == [BOB]
        (message,) = inbox_messages(sync.store, BOB)
        parsed = email.message_from_bytes(message)
        assert str(email.header.make_header(email.header.decode_header(parsed["Subject"]))) == \
            "Junk digest / 垃圾邮件摘要: 1"
        assert parsed["Auto-Submitted"] == "auto-generated"
        body = parsed.get_payload(decode=True).decode("utf-8")
        assert "张伟 <zw@spam.example>" in body and "Cheap pills" in body
        assert inbox_messages(sync.store, "carol@example.com") == []
        assert directory.setting("carol@example.com", LAST) is not None  # her period starts now

        # Not due again within the day, even with new junk ...
        sync.clock.now += 3600
        result_of(junk.append(b"From: b@spam.example\r\nSubject: Second\r\n\r\nx\r\n"))
        assert result_of(digest.send_due()) == []
        # ... and a day later it lists only what is new.
        sync.clock.now += PERIODS["daily"]
        assert result_of(digest.send_due()) == [BOB]
        second = inbox_messages(sync.store, BOB)[-1].decode("utf-8")
        assert "Second" in second and "Cheap pills" not in second
        # Nothing new: nothing sent.
        sync.clock.now += PERIODS["daily"]
        assert result_of(digest.send_due()) == []
        directory.set_setting(BOB, "spam_digest", "off")
        sync.clock.now += 1
        result_of(junk.append(b"From: c@spam.example\r\nSubject: Third\r\n\r\nx\r\n"))
        sync.clock.now += PERIODS["weekly"]
        assert result_of(digest.send_due()) == []
    finally:
        sync.close()
