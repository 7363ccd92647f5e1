"""Regressions per security bug class (aiosmtpd's test_smtpsmuggling.py style):
STARTTLS command injection, literal-size and line-length abuse, garbage and
flooding, hostile folder names (path traversal), password guessing."""

from __future__ import annotations

import pytest

from tests.protocols.imap_support import Wire


@pytest.fixture
def alice(server):  # type: ignore[no-untyped-def]
    with Wire(server.port("imap")) as w:
        w.login()
        yield w


@pytest.fixture
def wire(server):  # type: ignore[no-untyped-def]
    with Wire(server.port("imap")) as w:
        yield w


def test_starttls_discards_pipelined_plaintext(server) -> None:  # type: ignore[no-untyped-def]
    with Wire(server.port("imap"), source="127.0.0.2") as w:
        w.send(b"a STARTTLS\r\nb CAPABILITY\r\n")
        assert w.line() == b"a OK Begin TLS negotiation now"
        w.starttls()
        # Had "b CAPABILITY" run, its reply would be waiting now.
        w.send(b"c NOOP\r\n")
        assert w.line() == b"c OK NOOP completed"


@pytest.mark.parametrize("name", ['"../../etc"', '"a/../../b"', '"/abs"', '"a//b"', '"."', '".."'])
def test_hostile_folder_names_are_refused(alice: Wire, name: str) -> None:
    for cmd in (f"SELECT {name}", f"RENAME INBOX {name}"):
        tagged, _ = alice.transact(cmd)
        assert tagged.startswith((b"NO", b"BAD")), (cmd, tagged)
    tagged, _ = alice.transact(f"CREATE {name}")
    if tagged.startswith(b"OK"):
        # Only a harmless normalisation may succeed; it must stay inside the tree.
        lines = alice.ok('LIST "" "*"')
        assert not any(b".." in line for line in lines)
    alice.ok("NOOP")


def test_invalid_modified_utf7_is_no(alice: Wire) -> None:
    # A valid string naming no folder: NO, not BAD (RFC 3501 §7.1.5, issue 15).
    alice.expect("NO", 'SELECT "&Jjo"')  # unterminated base64 run
    alice.ok("NOOP")


def test_garbage_gets_bad_and_session_goes_on(alice: Wire) -> None:
    for junk in (b"\x00\x01\x02\r\n", b"((((\r\n", b"a\r\n", b"* FETCH\r\n", b"x UID NOOP\r\n",
                 b'y LOGIN "unterminated\r\n', b"z SELECT {5} x\r\n", b"\xff\xfe\r\n"):
        alice.send(junk)
        line = alice.line()
        assert b" BAD " in line, (junk, line)
    alice.ok("NOOP")


def test_command_line_too_long(alice: Wire) -> None:
    alice.send(b"a1 NOOP " + b"x" * 200000 + b"\r\n")
    # RFC 3501 §7.1.3: the tag was read, so the BAD is tagged.
    assert alice.line() == b"a1 BAD line too long"
    alice.ok("NOOP")


def test_flooding_client_is_cut_off(alice: Wire) -> None:
    alice.send(b"junk\r\n" * 50)
    with pytest.raises(ConnectionError):
        for _ in range(60):
            alice.line()


def test_literal_outside_append_is_limited(alice: Wire) -> None:
    tagged, _ = alice.transact(b"LIST {100000}")
    assert tagged.startswith(b"NO [TOOBIG]") or tagged.startswith(b"BAD")
    alice.ok("NOOP")


def test_append_too_big(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server("[limits]\nmax_message_size = 1000\n")
    server.add_domain("example.com")
    server.add_user("alice@example.com")
    with Wire(server.port("imap")) as w:
        assert b"APPENDLIMIT=1000" in w.greeting
        w.login()
        tagged, _ = w.transact(b"APPEND INBOX {5000}")
        assert tagged.startswith(b"NO [TOOBIG]")
        tagged, _ = w.transact(b"APPEND INBOX {5000+}\r\n" + b"x" * 5000)
        assert tagged.startswith(b"NO [TOOBIG]")
        w.ok("NOOP")


def test_too_many_failed_logins_disconnect(wire: Wire) -> None:
    for _ in range(4):
        wire.expect("NO", "LOGIN alice@example.com nope")
    tagged, untagged = wire.transact("LOGIN alice@example.com nope")
    assert tagged.startswith(b"NO") and untagged == [b"* BYE too many failed logins"]
    with pytest.raises(ConnectionError):
        wire.line()
