"""Two sessions on one folder, and IDLE push (RFC 3501 §5.2, §7.4.1; RFC 2177)."""

from __future__ import annotations

import os
import smtplib
import time

import pytest

from tests.conftest import PASSWORD
from tests.protocols.imap_support import Wire, deliver, message


@pytest.fixture
def pair(server):  # type: ignore[no-untyped-def]
    for i in range(1, 4):
        deliver(server, "alice@example.com", message(f"m{i}"))
    a, b = Wire(server.port("imap")), Wire(server.port("imap"))
    for w in (a, b):
        w.login()
        w.ok("SELECT INBOX")
    yield a, b
    a.close()
    b.close()


def test_new_mail_reaches_the_other_session_at_its_next_command(server, pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    deliver(server, "alice@example.com", message("new"))
    lines = b.ok("NOOP")
    assert lines == [b"* 4 EXISTS", b"* 1 RECENT"]
    # \Recent of the new message went to b only; a keeps its first three.
    assert a.ok("NOOP") == [b"* 4 EXISTS", b"* 3 RECENT"]
    assert a.ok("SEARCH RECENT") == [b"* SEARCH 1 2 3"]
    assert b.ok("SEARCH RECENT") == [b"* SEARCH 4"]


def test_flag_changes_are_sent_as_fetch(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    a.ok("STORE 2 +FLAGS (\\Flagged)")
    assert b.ok("NOOP") == [b"* 2 FETCH (UID 2 FLAGS (\\Flagged))"]
    assert a.ok("NOOP") == []  # its own change is not echoed again


def test_expunge_is_held_back_during_fetch_store_search(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert a.ok("EXPUNGE") == [b"* 2 EXPUNGE"]
    # RFC 3501 §7.4.1: not during FETCH / STORE / SEARCH by sequence number ...
    # RFC 2180 §4.1.3: message 2 is gone; the others are answered, and OK.
    tagged, lines = b.expect("OK", "FETCH 1:3 UID")
    assert not any(b"EXPUNGE" in line for line in lines)
    assert b"* 3 FETCH (UID 3)" in lines
    assert not any(b"EXPUNGE" in line for line in b.ok("SEARCH ALL"))
    assert not any(b"EXPUNGE" in line for line in b.ok("STORE 1 +FLAGS.SILENT (\\Seen)"))
    # ... but at the next command that allows it, with consistent numbers.
    assert b"* 2 EXPUNGE" in b.ok("NOOP")
    assert b.ok("FETCH 1:* UID") == [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 3)"]


def test_uid_fetch_may_carry_expunge(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    a.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    lines = b.ok("UID FETCH 1:* FLAGS")
    assert lines[-1] == b"* 1 EXPUNGE"


def test_several_expunges_in_descending_order(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    a.ok("STORE 1,3 +FLAGS.SILENT (\\Deleted)")
    a.ok("EXPUNGE")
    assert b.ok("NOOP") == [b"* 3 EXPUNGE", b"* 1 EXPUNGE"]


def test_idle_push_of_delivery_within_a_second(server, pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    tag = b.tag()
    b.send(tag + b" IDLE\r\n")
    assert b.line() == b"+ idling"
    start = time.monotonic()
    deliver(server, "alice@example.com", message("pushed"))
    assert b.line() == b"* 4 EXISTS"
    assert b.line() == b"* 1 RECENT"
    assert time.monotonic() - start < 1.0
    a.ok("STORE 1 +FLAGS (\\Answered)")
    assert b.line() == b"* 1 FETCH (UID 1 FLAGS (\\Answered))"
    a.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    assert b.line() == b"* 2 FETCH (UID 2 FLAGS (\\Deleted))"
    a.ok("EXPUNGE")
    assert b.line() == b"* 2 EXPUNGE"  # IDLE is a command in progress: EXPUNGE is fine
    b.send(b"DONE\r\n")
    status, lines = b.until(tag)
    assert status == b"OK IDLE terminated" and lines == []


def test_idle_needs_done(pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    tag = b.tag()
    b.send(tag + b" IDLE\r\n")
    assert b.line() == b"+ idling"
    b.send(b"NOPE\r\n")
    status, _ = b.until(tag)
    assert status.startswith(b"BAD")
    b.ok("NOOP")


def test_idle_push_of_smtp_delivery(server, pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    tag = b.tag()
    b.send(tag + b" IDLE\r\n")
    assert b.line() == b"+ idling"
    start = time.monotonic()
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as smtp:
        smtp.sendmail("someone@example.org", ["alice@example.com"], message("over smtp"))
    assert b.line() == b"* 4 EXISTS"
    assert time.monotonic() - start < 1.0
    b.send(b"DONE\r\n")
    b.until(tag)
    [line] = b.ok("FETCH 4 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: over smtp" in line


def test_append_in_other_session_is_seen(server, pair) -> None:  # type: ignore[no-untyped-def]
    a, b = pair
    body = message("appended")
    a.ok(b"APPEND INBOX (\\Seen) {%d+}\r\n" % len(body) + body)
    assert b"* 4 EXISTS" in b.ok("NOOP")
    assert b.ok("FETCH 4 FLAGS") == [b"* 4 FETCH (FLAGS (\\Seen))"]


def test_imapclient_idle(server) -> None:  # type: ignore[no-untyped-def]
    from imapclient import IMAPClient

    client = IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=10)
    client.login("alice@example.com", PASSWORD)
    client.select_folder("INBOX")
    client.idle()
    deliver(server, "alice@example.com", message("idle-imapclient"))
    responses = client.idle_check(timeout=2)
    client.idle_done()
    assert (1, b"EXISTS") in responses
    client.logout()


def test_idle_sees_a_file_dropped_into_new_by_another_program(server, pair) -> None:  # type: ignore[no-untyped-def]
    # Cross-process path: nothing in this process tells the store; its poller
    # notices new/ changed, adopts the file and notifies the IDLE session.
    a, b = pair
    tag = b.tag()
    b.send(tag + b" IDLE\r\n")
    assert b.line() == b"+ idling"
    root = server.mailbox("alice@example.com").root
    tmp = os.path.join(root, "tmp", "dropped.1")
    with open(tmp, "wb") as f:
        f.write(message("dropped in"))
    os.rename(tmp, os.path.join(root, "new", "dropped.1"))
    start = time.monotonic()
    b.sock.settimeout(5)
    assert b.line() == b"* 4 EXISTS"
    assert time.monotonic() - start < 2.0
    b.send(b"DONE\r\n")
    b.until(tag)
    [line] = b.ok("FETCH 4 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"Subject: dropped in" in line
