"""IMAP4rev2 (RFC 9051) next to IMAP4rev1, over real sockets: the session
speaks rev1 until `ENABLE IMAP4rev2`, then rev2 (xmail/protocols/imap/rev2.py)."""

from __future__ import annotations

import imaplib

import pytest

from tests.conftest import PASSWORD
from tests.protocols.imap_support import Wire, deliver, message


@pytest.fixture
def alice(server):  # type: ignore[no-untyped-def]
    with Wire(server.port("imap")) as w:
        w.login()
        yield w


def _rev2(w: Wire) -> None:
    assert w.ok("ENABLE IMAP4rev2") == [b"* ENABLED IMAP4rev2"]


def test_capability_and_enable(alice: Wire) -> None:
    [caps] = alice.ok("CAPABILITY")
    assert {b"IMAP4rev1", b"IMAP4rev2"} <= set(caps.split())
    _rev2(alice)
    # RFC 5161 §3.1: ENABLED lists only what this command turned on.
    assert alice.ok("ENABLE IMAP4rev2") == [b"* ENABLED"]
    assert alice.ok("ENABLE CONDSTORE IMAP4rev2") == [b"* ENABLED CONDSTORE"]


def test_enable_needs_authentication(server) -> None:  # type: ignore[no-untyped-def]
    with Wire(server.port("imap")) as w:
        w.expect("BAD", "ENABLE IMAP4rev2")  # RFC 9051 §6.3.1: authenticated state


def test_search_answers_esearch(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    for i in range(1, 4):
        deliver(server, "alice@example.com", message(f"m{i}"), flags=("\\Seen",) if i == 1 else ())
    alice.ok("SELECT INBOX")
    assert alice.ok("SEARCH UNSEEN") == [b"* SEARCH 2 3"]  # rev1 until ENABLE
    _rev2(alice)
    # RFC 9051 §6.4.4: ESEARCH, RETURN (ALL) implied; an empty result has no ALL.
    tag = alice.tag()
    alice.send(tag + b" SEARCH UNSEEN\r\n")
    status, lines = alice.until(tag)
    assert status.startswith(b"OK") and lines == [b'* ESEARCH (TAG "%s") ALL 2:3' % tag]
    tag = alice.tag()
    alice.send(tag + b" UID SEARCH ALL\r\n")
    assert alice.until(tag)[1] == [b'* ESEARCH (TAG "%s") UID ALL 1:3' % tag]
    tag = alice.tag()
    alice.send(tag + b" SEARCH DELETED\r\n")
    assert alice.until(tag)[1] == [b'* ESEARCH (TAG "%s")' % tag]
    # Explicit RETURN options are unchanged.
    tag = alice.tag()
    alice.send(tag + b" SEARCH RETURN (COUNT) ALL\r\n")
    assert alice.until(tag)[1] == [b'* ESEARCH (TAG "%s") COUNT 3' % tag]


def test_no_recent_and_select_responses(server) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", message("old"))
    with Wire(server.port("imap")) as first:  # a rev1 session looks first
        first.login()
        first.ok("SELECT INBOX")  # claims \\Recent of "old"
    deliver(server, "alice@example.com", message("new"))
    with Wire(server.port("imap")) as w:
        w.login()
        _rev2(w)
        lines = w.ok("SELECT INBOX")
        assert b"* 2 EXISTS" in lines
        # RFC 9051 §6.3.2: LIST of the mailbox; no RECENT, no UNSEEN code.
        assert b'* LIST (\\HasNoChildren) "/" INBOX' in lines, lines
        assert not any(b"RECENT" in line or b"UNSEEN" in line for line in lines), lines
        fetched = w.ok("FETCH 1:* FLAGS")
        assert fetched == [b"* 1 FETCH (FLAGS ())", b"* 2 FETCH (FLAGS ())"], fetched
        assert w.ok("SEARCH RECENT")[0].endswith(b")")  # nothing is \Recent in rev2
        deliver(server, "alice@example.com", message("newer"))
        lines = w.ok("NOOP")
        assert lines == [b"* 3 EXISTS"], lines
        # RFC 9051 §6.3.2: CLOSED marks the end of the old mailbox's responses.
        lines = w.ok("EXAMINE INBOX")
        assert lines[0] == b"* OK [CLOSED] previous mailbox closed", lines
    # The rev2 session claimed nothing: a rev1 session still gets \Recent.
    with Wire(server.port("imap")) as w:
        w.login()
        lines = w.ok("SELECT INBOX")
        assert b"* 2 RECENT" in lines, lines
        assert w.ok("FETCH 3 FLAGS") == [b"* 3 FETCH (FLAGS (\\Recent))"]


def test_utf8_mailbox_names(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    with Wire(server.port("imap")) as rev1:
        rev1.login()
        _rev2(alice)
        alice.ok('CREATE "Entwürfe"'.encode())
        alice.ok('CREATE "a&b"')  # "&" is just "&" in UTF-8 names
        listed = alice.ok('LIST "" "*"')
        assert '* LIST (\\HasNoChildren) "/" "Entwürfe"'.encode() in listed, listed
        assert b'* LIST (\\HasNoChildren) "/" a&b' in listed, listed
        # The same folders in modified UTF-7 for a rev1 session (RFC 3501 §5.1.3).
        listed = rev1.ok('LIST "" "*"')
        assert b'* LIST (\\HasNoChildren) "/" Entw&APw-rfe' in listed, listed
        assert b'* LIST (\\HasNoChildren) "/" a&-b' in listed, listed
        # After ENABLE, mUTF-7 is not decoded: this names another, absent folder.
        alice.expect("NO", "SELECT Entw&APw-rfe")
        alice.ok('APPEND "Entwürfe" {5+}\r\nhello'.encode())
        [line] = alice.ok('STATUS "Entwürfe" (MESSAGES SIZE DELETED)'.encode())
        assert line == '* STATUS "Entwürfe" (MESSAGES 1 SIZE 5 DELETED 0)'.encode(), line
        lines = alice.ok('SELECT "Entwürfe"'.encode())
        assert '* LIST (\\HasNoChildren) "/" "Entwürfe"'.encode() in lines, lines
        # Bad UTF-8 is not a syntax error: NO (RFC 9051 §7.1.5 BAD is for syntax).
        alice.expect("NO", b'SELECT {2+}\r\n\xff\xfe')


def test_list_nonexistent_parent(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    alice.ok("CREATE p/c")
    alice.ok("DELETE p")
    # rev1 keeps \Noselect for the plain LIST (RFC 3501 §6.3.8) ...
    assert b'* LIST (\\Noselect \\HasChildren) "/" p' in alice.ok('LIST "" "*"')
    _rev2(alice)
    # ... rev2 says \NonExistent (RFC 9051 §7.3.1).
    assert b'* LIST (\\NonExistent \\HasChildren) "/" p' in alice.ok('LIST "" "*"')
    # RFC 9051 §6.3.5: such a level cannot be deleted; a name that is not there at all is NONEXISTENT.
    assert alice.expect("NO", "DELETE p")[0].startswith(b"NO [HASCHILDREN]")
    assert alice.expect("NO", "DELETE q")[0].startswith(b"NO [NONEXISTENT]")
    # LIST-STATUS and LSUB still work for the rev2 session.
    lines = alice.ok('LIST "" "p/c" RETURN (STATUS (MESSAGES SIZE))')
    assert lines[-1] == b'* STATUS p/c (MESSAGES 0 SIZE 0)', lines
    alice.ok("SUBSCRIBE p/c")
    assert b'* LSUB () "/" p/c' in alice.ok('LSUB "" "*"')


def test_imaplib_enable_and_search(server) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", message("one"))
    deliver(server, "alice@example.com", message("two"))
    m = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    try:
        m.login("alice@example.com", PASSWORD)
        assert "IMAP4REV2" in m.capabilities
        typ, data = m.enable("IMAP4rev2")
        assert typ == "OK"
        assert m.response("ENABLED") == ("ENABLED", [b"IMAP4rev2"])
        m.select("INBOX")
        typ, data = m.search(None, "ALL")
        assert typ == "OK" and data == [None]  # imaplib waits for SEARCH: rev2 sent ESEARCH
        typ, data = m.response("ESEARCH")
        assert data[0].endswith(b"ALL 1:2"), data
        typ, data = m.status("INBOX", "(SIZE)")
        assert typ == "OK" and b"SIZE" in data[0]
    finally:
        m.logout()


def test_enable_while_selected_drops_recent(server) -> None:  # type: ignore[no-untyped-def]
    with Wire(server.port("imap")) as w:
        w.login()
        w.ok("SELECT INBOX")
        deliver(server, "alice@example.com", message("new"))
        assert w.ok("NOOP") == [b"* 1 EXISTS", b"* 1 RECENT"]
        assert w.ok("FETCH 1 FLAGS") == [b"* 1 FETCH (FLAGS (\\Recent))"]
        _rev2(w)
        assert w.ok("FETCH 1 FLAGS") == [b"* 1 FETCH (FLAGS ())"]
        deliver(server, "alice@example.com", message("newer"))
        assert w.ok("NOOP") == [b"* 2 EXISTS"]
