"""Regressions per security bug class (aiosmtpd's test_smtpsmuggling.py style):
STARTTLS command injection, literal-size and line-length abuse, garbage and
flooding, hostile folder names (path traversal), password guessing."""

from __future__ import annotations

import glob
import os

import pytest

from tests.conftest import PASSWORD, wait_until
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
        w.ok("NOOP")  # a refused {n} was never sent: the session goes on
        # RFC 7888 §4: a {n+} over the limit is already on its way (and could
        # be endless): refused, then the connection is closed.
        tagged, untagged = w.transact(b"APPEND INBOX {5000+}\r\n" + b"x" * 5000)
        assert tagged.startswith(b"NO [TOOBIG]")
        assert w.line().startswith(b"* BYE [TOOBIG]")
        with pytest.raises(ConnectionError):
            w.line()


# -- literals before login (issue 16 #2) -------------------------------------------------------

def test_preauth_literal_over_a_few_kb_is_refused_unread(wire: Wire) -> None:
    # The APPEND allowance (40 MB) is not granted by command name before login.
    for command in (b"APPEND INBOX {50000}", b"LOGIN {9000}", b"LOGIN alice@example.com {9000}"):
        tagged, untagged = wire.transact(command)
        assert tagged.startswith(b"NO [TOOBIG]"), (command, tagged)
        assert not any(line.startswith(b"+") for line in untagged)  # no go-ahead
    wire.ok("NOOP")  # nothing was read as a command; the session is usable


def test_preauth_literals_of_one_command_share_the_limit(wire: Wire) -> None:
    # Two literals of 5 kB each fit the pre-login cap (8 kB) one by one, not
    # together: a stranger's command never holds more than the cap.
    wire.send(b"a LOGIN {5000}\r\n")
    assert wire.line().startswith(b"+")
    wire.send(b"u" * 5000 + b" {5000}\r\n")
    tagged = wire.line()
    assert tagged.startswith(b"a NO [TOOBIG]"), tagged  # and no "+" for the second
    wire.ok("NOOP")


def test_preauth_nonsync_literal_over_the_limit_closes(wire: Wire) -> None:
    # A few of the announced bytes only: closing with unread input would make
    # the kernel answer RST, which may drop our reply before the client reads it.
    wire.send(b"a LOGIN {100000+}\r\n" + b"b NOOP\r\n" * 100)
    assert wire.line().startswith(b"a NO [TOOBIG]")
    assert wire.line().startswith(b"* BYE [TOOBIG]")
    with pytest.raises((ConnectionError, OSError)):
        wire.line()  # and no "b OK": the literal's bytes were never run


def test_login_with_literals_still_works(wire: Wire) -> None:
    user, password = b"alice@example.com", PASSWORD.encode()
    tag = b"l1"
    wire.send(tag + b" LOGIN {%d}\r\n" % len(user))
    assert wire.line().startswith(b"+")
    wire.send(user + b" {%d+}\r\n" % len(password) + password + b"\r\n")
    status, _ = wire.until(tag)
    assert status.startswith(b"OK"), status
    wire.ok("SELECT INBOX")


def test_large_literals_spool_under_data_dir_tmp(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    tmp = os.path.join(server.settings.data_dir, "tmp")
    size = 2 * 1024 * 1024
    data = b"Subject: big\r\n\r\n" + b"x" * (size - 17)
    tag = alice.tag()
    alice.send(tag + b" APPEND INBOX {%d}\r\n" % size)
    assert alice.line().startswith(b"+")
    alice.send(data[: size // 2])
    spooled = wait_until(lambda: glob.glob(os.path.join(tmp, "imap-literal-*")), what="a spool file")
    assert len(spooled) == 1 and os.stat(tmp).st_mode & 0o777 == 0o700
    alice.send(data[size // 2 :] + b"\r\n")
    status, _ = alice.until(tag)
    assert status.startswith(b"OK"), status
    wait_until(lambda: not glob.glob(os.path.join(tmp, "imap-literal-*")), what="the spool released")


def test_too_many_failed_logins_disconnect(wire: Wire) -> None:
    for _ in range(4):
        wire.expect("NO", "LOGIN alice@example.com nope")
    tagged, untagged = wire.transact("LOGIN alice@example.com nope")
    assert tagged.startswith(b"NO") and untagged == [b"* BYE too many failed logins"]
    with pytest.raises(ConnectionError):
        wire.line()
