# -*- test-case-name: tests.sieve.test_vacation -*-
"""When a vacation reply may go out (RFC 5230 §4.5, RFC 3834 §2), the
memory of who got one, and the reply's fields."""

from __future__ import annotations

import email

import pytest

from tests.support.server import in_reactor, reactor_running
from xmail.db.environment import IndexEnvironment
from xmail.message import scan_header_section
from xmail.sieve.vacation import VacationMemory, compose_reply, refusal

BOB = "bob@example.com"


def header(text: str):
    return scan_header_section(text.replace("\n", "\r\n").encode() + b"\r\n")


def own(address: str) -> bool:
    return address.lower() in (BOB, "bob@example.cn")


PLAIN = "From: alice@example.org\nTo: Bob <bob@example.com>\nSubject: hi\nMessage-ID: <1@x>\n"


def test_a_plain_message_to_the_user_gets_a_reply() -> None:
    assert refusal(header(PLAIN), "alice@example.org", own) is None
    # An alias-domain address counts as the user's.
    assert refusal(header(PLAIN.replace("bob@example.com", "bob@example.cn")), "a@b.c", own) is None


@pytest.mark.parametrize("extra, sender, why", [
    ("", "", "null sender"),
    ("", "MAILER-DAEMON@example.org", "program"),
    ("", "owner-list@example.org", "program"),
    ("", "list-request@example.org", "program"),
    ("Auto-Submitted: auto-replied\n", "alice@example.org", "Auto-Submitted"),
    ("List-Id: <dev.example.org>\n", "alice@example.org", "list"),
    ("Precedence: bulk\n", "alice@example.org", "Precedence"),
    ("Precedence: junk\n", "alice@example.org", "Precedence"),
])
def test_no_reply_to_programs_lists_and_automatic_mail(extra: str, sender: str, why: str) -> None:
    assert why in refusal(header(PLAIN + extra), sender, own)


def test_auto_submitted_no_is_a_person() -> None:
    assert refusal(header(PLAIN + "Auto-Submitted: no\n"), "alice@example.org", own) is None


def test_bcc_or_list_copies_get_no_reply_unless_listed_in_addresses() -> None:
    text = PLAIN.replace("To: Bob <bob@example.com>", "To: team@example.org")
    assert "not a visible recipient" in refusal(header(text), "alice@example.org", own)
    assert refusal(header(text), "alice@example.org", own, ["team@example.org"]) is None


def test_the_reply_is_marked_and_threads() -> None:
    original = header(PLAIN + "References: <0@x>\n")
    data = compose_reply(user=BOB, from_=None, to="alice@example.org", subject=None,
                         reason="Away\nBack Monday",
                         original=original, hostname="mail.example.com", now=0)
    reply = email.message_from_bytes(data)
    assert reply["Auto-Submitted"].startswith("auto-replied")
    assert reply["In-Reply-To"] == "<1@x>"
    assert reply["References"] == "<0@x> <1@x>"
    assert reply["Subject"] == "Auto: hi"
    assert reply["From"] == BOB and reply["To"] == "alice@example.org"
    assert b"\r\nAway\r\nBack Monday\r\n" in data
    chinese = compose_reply(user=BOB, from_=None, to="a@b.c", subject="休假中", reason="我在休假",
                            original=original, hostname="h", now=0)
    assert b"=?utf-8?" in chinese.split(b"\r\n\r\n")[0]
    assert "我在休假".encode() in chinese


def test_memory_remembers_per_sender_and_handle_until_the_period_ends(tmp_path) -> None:
    reactor = reactor_running()
    env = IndexEnvironment(str(tmp_path / "index"), reactor=reactor)
    env.open()
    now = [1000.0]
    memory = VacationMemory(env, clock=lambda: now[0])
    try:
        assert not memory.replied(BOB, "h", "alice@example.org")
        in_reactor(memory.remember, BOB, "h", "Alice@Example.org", 86400)
        assert memory.replied(BOB, "h", "alice@example.org")
        assert not memory.replied(BOB, "other handle", "alice@example.org")
        assert not memory.replied(BOB, "h", "carol@example.org")
        now[0] += 86401
        assert not memory.replied(BOB, "h", "alice@example.org")
    finally:
        env.close()
