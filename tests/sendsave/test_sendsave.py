# -*- test-case-name: tests.sendsave.test_sendsave -*-
"""SendSaver: the Bcc field, and saving into the real store (with APPEND dedup)."""

from __future__ import annotations

import os
from typing import Any

from xmail.message import parse_message
from xmail.sendsave import SendSaver
from xmail.sendsave.saver import bcc_field, header_addresses

HEADERS = (b"From: Alice <alice@example.com>\r\nTo: Bob <bob@example.com>,\r\n carol@example.com\r\n"
           b"Cc: \"Dave D.\" <DAVE@example.com>\r\nSubject: hi\r\nMessage-ID: <s1@example.com>\r\n\r\n")
MESSAGE = HEADERS + b"hello\r\n"


def test_header_addresses() -> None:
    assert header_addresses(HEADERS, ("To", "Cc")) == {"bob@example.com", "carol@example.com",
                                                       "dave@example.com"}


def test_header_addresses_read_as_the_store_reads_them() -> None:
    """Issue 14: one address grammar.  The stdlib parser skipped `To :` and
    stopped at a line without a colon, so recipients the saved copy shows in
    its ENVELOPE (xmail.message) were also listed again in the added Bcc."""
    section = (b"From: alice@example.com\r\nTo : Bob <bob@example.com>\r\nnot a field\r\n"
               b"Cc: (Carol) carol@example.com, \"Last, First\" <first@example.com>\r\n\r\n")
    visible = {"bob@example.com", "carol@example.com", "first@example.com"}
    assert header_addresses(section, ("To", "Cc", "Bcc")) == visible
    envelope = envelope_addresses(section)
    assert visible == envelope
    assert bcc_field(section, ["bob@example.com", "Carol@example.com", "first@example.com"]) == b""


def envelope_addresses(section: bytes) -> set[str]:
    """The To and Cc mailboxes of the ENVELOPE the store caches for a message."""
    env = parse_message(section + b"body\r\n").structure["env"]
    return {f"{local}@{host}".lower() for field in ("to", "cc") for _name, _adl, local, host
            in env.get(field) or () if host}


def test_bcc_lists_only_hidden_recipients() -> None:
    assert bcc_field(HEADERS, ["bob@example.com", "Dave@example.com"]) == b""
    assert bcc_field(HEADERS, ["bob@example.com", "eve@example.com", "eve@example.com"]) == (
        b"Bcc: eve@example.com\r\n")


def test_long_bcc_is_folded() -> None:
    field = bcc_field(b"To: x@y\r\n\r\n", [f"someone{i}@example.com" for i in range(10)])
    lines = field.split(b"\r\n")[:-1]
    assert len(lines) > 1 and all(len(line) <= 78 for line in lines)
    assert all(line.startswith(b" ") for line in lines[1:])


def make_saver(server: Any) -> SendSaver:
    return SendSaver(server.ctx.store, server.ctx.directory, os.path.join(server.settings.data_dir, "tmp"))


def sent(server: Any, address: str) -> Any:
    return server.call(server.mailbox(address).folder, "Sent")


def test_save_into_sent_then_client_append_is_deduplicated(server: Any) -> None:
    saver = make_saver(server)
    result = server.call(saver.save, "alice@example.com", MESSAGE, HEADERS,
                         ["bob@example.com", "zed@example.com"], "<s1@example.com>")
    box = sent(server, "alice@example.com")
    [record] = box.records()
    assert record.uid == result.uid and "\\Seen" in record.flags
    with box.open_message(record.uid) as f:
        stored = f.read()
    assert stored.startswith(b"Bcc: zed@example.com\r\n") and stored.endswith(MESSAGE)
    # Thunderbird/Outlook then APPEND their own copy to Sent: nothing new is stored.
    again = server.call(box.append, MESSAGE, ("\\Seen",))
    assert again.deduplicated and again.uid == record.uid
    assert len(box.records()) == 1
    # A different message is stored normally.
    other = server.call(box.append, MESSAGE.replace(b"<s1@", b"<s2@"), ())
    assert not other.deduplicated
    assert len(box.records()) == 2


def test_save_from_a_file(server: Any, tmp_path: Any) -> None:
    (tmp_path / "spool").mkdir()
    path = tmp_path / "spool" / "message"
    path.write_bytes(MESSAGE)
    saver = make_saver(server)
    server.call(saver.save, "alice@example.com", str(path), HEADERS, ["zed@example.com"], "<s1@example.com>")
    box = sent(server, "alice@example.com")
    [record] = box.records()
    with box.open_message(record.uid) as f:
        assert f.read() == b"Bcc: zed@example.com\r\n" + MESSAGE
    assert path.exists()  # the caller's file is left alone; the prefixed copy is gone
    assert os.listdir(tmp_path / "spool") == ["message"]


def test_switched_off_per_user(server: Any) -> None:
    server.ctx.directory.set_setting("alice@example.com", "send_save", "off")
    saver = make_saver(server)
    assert server.call(saver.save, "alice@example.com", MESSAGE, HEADERS, [], None) is None
    assert sent(server, "alice@example.com").records() == []
