# -*- test-case-name: tests.protocols.test_imap_quota -*-
"""QUOTA (RFC 9208) against the real server: GETQUOTAROOT / GETQUOTA from
the user's limits, refusals with NO [OVERQUOTA] for APPEND and COPY, MOVE
allowed at the limit (it adds nothing), SETQUOTA refused, STATUS DELETED
and DELETED-STORAGE."""

from __future__ import annotations

from typing import Any

import pytest

from tests.protocols.imap_support import Wire, deliver, message

USER = "carol@example.com"


@pytest.fixture
def carol(server):  # type: ignore[no-untyped-def]
    # 3 messages or 4 KiB, whichever comes first.
    server.add_user(USER, quota_bytes=4096, quota_messages=3)
    with Wire(server.port("imap")) as wire:
        wire.login(USER)
        yield wire


def append(wire: Wire, folder: str, data: bytes) -> tuple[bytes, list[bytes]]:
    tag = wire.tag()
    wire.send(tag + b" APPEND " + folder.encode() + b" {%d+}\r\n" % len(data) + data + b"\r\n")
    return wire.until(tag)


def test_capabilities(carol: Wire) -> None:
    [caps] = carol.ok("CAPABILITY")
    assert {b"QUOTA", b"QUOTA=RES-STORAGE", b"QUOTA=RES-MESSAGE"} <= set(caps.split())


def test_getquotaroot_and_getquota(server: Any, carol: Wire) -> None:
    deliver(server, USER, message("one", body="x" * 1500 + "\r\n"))
    size = server.mailbox(USER).quota().bytes_used
    kib = (size + 1023) // 1024
    assert carol.ok("GETQUOTAROOT INBOX") == [
        b'* QUOTAROOT INBOX ""', b'* QUOTA "" (STORAGE %d 4 MESSAGE 1 3)' % kib]
    assert carol.ok('GETQUOTA ""') == [b'* QUOTA "" (STORAGE %d 4 MESSAGE 1 3)' % kib]
    tagged, _ = carol.transact('GETQUOTA "other"')
    assert tagged.startswith(b"NO [NONEXISTENT]")
    tagged, _ = carol.transact("GETQUOTAROOT Nope")
    assert tagged.startswith(b"NO [NONEXISTENT]")


def test_limits_follow_the_directory(server: Any, carol: Wire) -> None:
    # What `xmailctl user set ADDRESS quota_bytes=N` changes.
    server.ctx.directory.set_quota(USER, quota_bytes=0, quota_messages=10)
    assert carol.ok('GETQUOTA ""') == [b'* QUOTA "" (MESSAGE 0 10)']  # no limit, not listed
    server.ctx.directory.set_quota(USER, quota_bytes=0, quota_messages=0)
    assert carol.ok('GETQUOTA ""') == [b'* QUOTA "" ()']


def test_setquota_is_refused(carol: Wire) -> None:
    tagged, _ = carol.transact('SETQUOTA "" (STORAGE 100000)')
    assert tagged.startswith(b"NO [NOPERM]")


def test_append_over_quota(server: Any, carol: Wire) -> None:
    for i in range(3):
        tagged, _ = append(carol, "INBOX", message(f"m{i}"))
        assert tagged.startswith(b"OK [APPENDUID"), tagged
    tagged, _ = append(carol, "INBOX", message("too many"))
    assert tagged.startswith(b"NO [OVERQUOTA]"), tagged
    assert server.mailbox(USER).quota().messages_used == 3
    carol.ok("NOOP")  # the connection stays usable


def test_append_over_byte_quota(server: Any, carol: Wire) -> None:
    tagged, _ = append(carol, "INBOX", message("big", body="y" * 5000 + "\r\n"))
    assert tagged.startswith(b"NO [OVERQUOTA]"), tagged
    assert server.mailbox(USER).quota().messages_used == 0


def test_copy_over_quota_and_move_at_the_limit(server: Any, carol: Wire) -> None:
    for i in range(2):
        deliver(server, USER, message(f"m{i}"))
    carol.ok("SELECT INBOX")
    carol.ok("COPY 1 Archive")  # 3 of 3
    tagged, _ = carol.transact("COPY 2 Archive")
    assert tagged.startswith(b"NO [OVERQUOTA]"), tagged
    # MOVE frees what it takes: usage does not change, so it is allowed.
    tagged, _ = carol.transact("MOVE 2 Archive")
    assert tagged.startswith(b"OK"), tagged
    assert server.mailbox(USER).quota().messages_used == 3


def test_status_deleted(server: Any, carol: Wire) -> None:
    for i in range(3):
        deliver(server, USER, message(f"m{i}", body="z" * 1000 + "\r\n"))
    carol.ok("SELECT INBOX")
    carol.ok("STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    records = server.mailbox(USER).folder("INBOX").records()
    freed = (records[0].size + records[2].size + 1023) // 1024
    assert carol.ok("STATUS INBOX (DELETED DELETED-STORAGE MESSAGES)") == [
        b"* STATUS INBOX (DELETED 2 DELETED-STORAGE %d MESSAGES 3)" % freed]
