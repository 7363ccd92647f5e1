# -*- test-case-name: tests.queue.test_two_servers -*-
"""Acceptance: mail submitted to one xmail instance is queued and delivered
over SMTP to a SECOND xmail instance on loopback, through the static
transport map; a recipient the second one refuses bounces to the sender."""

from __future__ import annotations

import email
import email.policy
import smtplib
import sys
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.queue.test_runner import dsn_fields
from tests.support.wait import wait_until as wait_for


def inbox(server: Any, address: str) -> list[Any]:
    def read() -> list[bytes]:
        folder = server.ctx.store.mailbox(address).folder("INBOX")
        out = []
        for rec in folder.records():
            with folder.open_message(rec.uid) as f:
                out.append(f.read())
        return out

    return [email.message_from_bytes(raw, policy=email.policy.compat32) for raw in server.call(read)]


@pytest.fixture
def pair(make_server: Any) -> tuple[Any, Any]:
    other = make_server()
    other.add_domain("other.test")
    other.add_user("bob@other.test")
    first = make_server(toml=f'[transport]\n"other.test" = "127.0.0.1:{other.port("smtp")}"\n')
    first.add_domain("example.com")
    first.add_user("alice@example.com")
    return first, other


def submit(server: Any, rcpts: list[str], body: str, **kw: Any) -> Any:
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=20) as client:
        client.login("alice@example.com", PASSWORD)
        return client.sendmail("alice@example.com", rcpts, body, **kw)


MESSAGE = ("From: alice@example.com\r\nTo: bob@other.test\r\nSubject: across\r\n"
           "Message-ID: <across-1@example.com>\r\n\r\nFrom one xmail to another.\r\n.leading dot\r\n")


def test_queue_delivers_to_second_instance(pair):
    first, other = pair
    submit(first, ["bob@other.test"], MESSAGE)
    wait_for(lambda: inbox(other, "bob@other.test"), timeout=20, what="delivery to the second instance")
    (msg,) = inbox(other, "bob@other.test")
    assert msg["Subject"] == "across"
    assert msg["Return-Path"] == "<alice@example.com>"
    assert ".leading dot" in msg.get_payload()
    assert "mail.example.com" in " ".join(msg.get_all("Received") or [])
    wait_for(lambda: not _queued(first), what="empty queue on the first instance")


def test_refused_recipient_bounces_to_sender(pair):
    first, other = pair
    submit(first, ["nobody@other.test", "bob@other.test"], MESSAGE, rcpt_options=["NOTIFY=FAILURE"])
    wait_for(lambda: inbox(first, "alice@example.com"), timeout=20, what="bounce to alice")
    (bounce,) = inbox(first, "alice@example.com")
    _, (block,) = dsn_fields(bounce)
    assert block["Final-Recipient"] == "rfc822; nobody@other.test"
    assert block["Action"] == "failed"
    assert block["Status"].startswith("5.1.")
    wait_for(lambda: inbox(other, "bob@other.test"), timeout=20, what="delivery of the good recipient")
    wait_for(lambda: not _queued(first), what="empty queue")


def test_many_messages_share_connections(pair):
    first, other = pair
    for i in range(10):
        submit(first, ["bob@other.test"], MESSAGE.replace("across", f"across {i}"))
    wait_for(lambda: len(inbox(other, "bob@other.test")) == 10, timeout=30, what="10 deliveries")
    subjects = sorted(m["Subject"] for m in inbox(other, "bob@other.test"))
    assert subjects == sorted(f"across {i}" for i in range(10))


def _queued(server: Any) -> list[Any]:
    queue = server.ctx.queue
    with queue.env.read() as txn:
        return list(queue.spool.all(txn))


def test_xmailctl_queue_list_retry_delete(make_server, tmp_path):
    import socket
    import subprocess

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    first = make_server(toml=f'[transport]\n"other.test" = "127.0.0.1:{dead}"\n')
    first.add_domain("example.com")
    first.add_user("alice@example.com")
    submit(first, ["bob@other.test"], MESSAGE)
    submit(first, ["carol@other.test"], MESSAGE)
    wait_for(lambda: len(queued := _queued(first)) == 2 and all(m.recipients[0].attempts for m in queued),
             what="two failed attempts")

    def ctl(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "xmail.cli", "--data", first.settings.data_dir, *args],
                              capture_output=True, text=True, timeout=60)

    listed = ctl("queue", "list")
    assert listed.returncode == 0, listed.stderr
    lines = [line.split("\t") for line in listed.stdout.splitlines()]
    assert sorted(line[4] for line in lines) == ["bob@other.test", "carol@other.test"]
    assert all(line[2] == "alice@example.com" and line[5] == "queued" and line[6] == "1" for line in lines)
    assert all("connect" in line[8] for line in lines)
    bob_id = next(line[0] for line in lines if line[4] == "bob@other.test")

    before = {m.id: m.recipients[0].next_attempt for m in _queued(first)}
    retried = ctl("queue", "retry", bob_id)
    assert retried.returncode == 0 and retried.stdout.split() == [bob_id, "retry"]
    # The running daemon picks the change up at its next poll and tries again.
    wait_for(lambda: next(m for m in _queued(first) if m.id == bob_id).recipients[0].attempts == 2,
             timeout=15, what="retry by the daemon")
    assert next(m for m in _queued(first) if m.id != bob_id).recipients[0].next_attempt == before[
        next(i for i in before if i != bob_id)]

    deleted = ctl("queue", "delete", bob_id)
    assert deleted.returncode == 0, deleted.stderr
    assert [m.id for m in _queued(first)] != [] and bob_id not in [m.id for m in _queued(first)]
    assert ctl("queue", "delete", bob_id).returncode == 1
    assert ctl("queue", "retry", "../x").returncode == 1
    assert ctl("queue", "retry", "--all").returncode == 0
    # --all reached the running daemon too: carol's message is tried again.
    wait_for(lambda: all(m.recipients[0].attempts >= 2 for m in _queued(first)), timeout=15,
             what="retry --all by the daemon")
