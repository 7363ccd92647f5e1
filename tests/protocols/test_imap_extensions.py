"""Transcript tests for the IMAP extensions of issue 15 against a real
server: BINARY (RFC 3516), MULTIAPPEND (RFC 3502), SEARCHRES (RFC 5182),
MULTISEARCH (RFC 7377), PARTIAL and CONTEXT (RFC 9394, RFC 5267), CATENATE
(RFC 4469)."""

from __future__ import annotations

import base64
import re

import pytest

from tests.protocols.imap_support import Wire, deliver, message


@pytest.fixture
def alice(server):  # type: ignore[no-untyped-def]
    with Wire(server.port("imap")) as w:
        w.login()
        yield w


PAYLOAD = bytes(range(256)) * 4  # NUL and every other octet


def _multipart(payload: bytes = PAYLOAD) -> bytes:
    b64 = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (b"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: binary\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
            b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"caf=C3=A9 au lait\r\n"
            b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b64 +
            b"--XX\r\nContent-Type: application/x-odd\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
            b"begin 644 x\r\nend\r\n"
            b"--XX--\r\n")


# --- BINARY (RFC 3516) ---------------------------------------------------------------------------


def test_binary_capability(alice: Wire) -> None:
    [caps] = alice.ok("CAPABILITY")
    assert b"BINARY" in caps.split()


def test_fetch_binary_decodes_base64_with_literal8(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", _multipart())
    alice.ok("SELECT INBOX")
    [line] = alice.ok("FETCH 1 (BINARY.PEEK[2])")
    # RFC 3516 §4.2: data with NUL goes out as literal8 ~{n}
    assert line.startswith(b"* 1 FETCH (BINARY[2] ~{%d}\r\n" % len(PAYLOAD)), line[:60]
    assert line.endswith(PAYLOAD + b")")
    [line] = alice.ok("FETCH 1 (BINARY.SIZE[2] BINARY.SIZE[1] FLAGS)")
    assert line == b"* 1 FETCH (BINARY.SIZE[2] %d BINARY.SIZE[1] 13 FLAGS (\\Recent))" % len(PAYLOAD)


def test_fetch_binary_quoted_printable_partial_and_seen(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", _multipart())
    alice.ok("SELECT INBOX")
    [line] = alice.ok("FETCH 1 (BINARY[1]<2.5>)")
    assert line.startswith(b"* 1 FETCH (BINARY[1]<2> {5}\r\nf\xc3\xa9 a")
    assert b"\\Seen" in line  # BINARY (not PEEK) sets \Seen like BODY[]
    [line] = alice.ok("FETCH 1 BINARY.PEEK[1]")
    assert line == b"* 1 FETCH (BINARY[1] {13}\r\ncaf\xc3\xa9 au lait)"
    # No such part: NIL (RFC 3516 §4.2 as BODY[] in RFC 3501 §6.4.5)
    [line] = alice.ok("FETCH 1 BINARY.PEEK[9]")
    assert line == b"* 1 FETCH (BINARY[9] NIL)"


def test_fetch_binary_unknown_cte(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", _multipart())
    alice.ok("SELECT INBOX")
    tagged, _ = alice.expect("NO", "FETCH 1 (BINARY.PEEK[3])")
    assert tagged.startswith(b"NO [UNKNOWN-CTE]")
    alice.expect("BAD", "FETCH 1 (BINARY[1.HEADER])")  # section-binary is part numbers only
    alice.expect("BAD", "FETCH 1 (BINARY.SIZE[1]<0.2>)")
    alice.ok("NOOP")  # the connection stays usable


def test_append_literal8(alice: Wire) -> None:
    body = b"Subject: nul\r\n\r\nbefore\0after\r\n"
    tag = alice.tag()
    alice.send(tag + b" APPEND INBOX ~{%d}\r\n" % len(body))
    assert alice.line().startswith(b"+ ")
    alice.send(body + b"\r\n")
    status, _ = alice.until(tag)
    assert status.startswith(b"OK [APPENDUID"), status
    tagged, _ = alice.transact(b"APPEND INBOX (\\Seen) ~{%d+}\r\n" % len(body) + body)
    assert tagged.startswith(b"OK [APPENDUID"), tagged
    alice.ok("SELECT INBOX")
    [line] = alice.ok("FETCH 2 (FLAGS BINARY.PEEK[])")
    assert line == b"* 2 FETCH (FLAGS (\\Seen \\Recent) BINARY[] ~{%d}\r\n%s)" % (len(body), body)


# --- MULTIAPPEND (RFC 3502) ----------------------------------------------------------------------


def _multiappend(w: Wire, box: str, bodies: list[bytes], extra: bytes = b"") -> tuple[bytes, list[bytes]]:
    """APPEND box with each body as a synchronizing literal (waits for each "+")."""
    tag = w.tag()
    line = tag + b" APPEND " + box.encode()
    for i, body in enumerate(bodies):
        opts = b" (\\Seen)" if i == 1 else b""
        w.send(line + opts + b" {%d}\r\n" % len(body))
        assert w.line().startswith(b"+ ")
        line = body
    w.send(line + extra + b"\r\n")
    return w.until(tag)


def test_multiappend_stores_all_with_uid_set(alice: Wire) -> None:
    [caps] = alice.ok("CAPABILITY")
    assert b"MULTIAPPEND" in caps.split()
    bodies = [message(f"multi {i}") for i in range(3)]
    status, _ = _multiappend(alice, "Drafts", bodies)
    m = re.match(rb"OK \[APPENDUID (\d+) 1:3\] ", status)
    assert m, status
    untagged = alice.ok("SELECT Drafts")
    assert b"* 3 EXISTS" in untagged
    [first, second, third] = alice.ok("FETCH 1:3 (FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert b"multi 0" in first and b"multi 1" in second and b"multi 2" in third
    assert b"\\Seen" in second and b"\\Seen" not in third  # flags are per message
    # Non-synchronizing literals and a date-time on the second message.
    a, b = message("plus a"), message("plus b")
    tagged, _ = alice.transact(b"APPEND Drafts {%d+}\r\n%s \"05-Mar-2021 10:11:12 +0100\" {%d+}\r\n%s"
                               % (len(a), a, len(b), b))
    assert re.match(rb"OK \[APPENDUID \d+ 4:5\]", tagged), tagged
    [line] = alice.ok("FETCH 5 INTERNALDATE")
    assert b" 5-Mar-2021 09:11:12 +0000" in line


def test_multiappend_is_all_or_nothing(server) -> None:  # type: ignore[no-untyped-def]
    server.add_user("carol@example.com", quota_messages=2)
    with Wire(server.port("imap")) as w:
        w.login("carol@example.com")
        status, _ = _multiappend(w, "INBOX", [message(f"q {i}") for i in range(3)])
        assert status.startswith(b"NO [OVERQUOTA]"), status
        # The two that fitted were taken back: nothing was appended.
        [line] = w.ok("STATUS INBOX (MESSAGES UIDNEXT)")
        assert b"MESSAGES 0" in line
        assert b"(MESSAGES 0" in w.ok("STATUS Recycle (MESSAGES)")[0]
        # A bad message later in the command fails the command before any store.
        status, _ = _multiappend(w, "INBOX", [message("ok"), b""])
        assert status.startswith(b"NO"), status
        assert b"MESSAGES 0" in w.ok("STATUS INBOX (MESSAGES)")[0]
        status, _ = _multiappend(w, "INBOX", [message("one"), message("two")])
        assert re.match(rb"OK \[APPENDUID \d+ \d+:\d+\]", status), status


# --- CATENATE (RFC 4469) -------------------------------------------------------------------------


def test_catenate_text_and_urls(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    [caps] = alice.ok("CAPABILITY")
    assert b"CATENATE" in caps.split()
    deliver(server, "alice@example.com", _multipart())
    [status] = alice.ok("STATUS INBOX (UIDVALIDITY)")
    validity = int(re.search(rb"UIDVALIDITY (\d+)", status).group(1))
    head = (b"From: alice@example.com\r\nSubject: forward\r\n"
            b"Content-Type: multipart/mixed; boundary=YY\r\n\r\n--YY\r\n")
    url = b"/INBOX;UIDVALIDITY=%d/;UID=1/;SECTION=1.MIME" % validity
    tail = b"\r\n--YY--\r\n"
    tagged, _ = alice.transact(
        b"APPEND Drafts (\\Draft) CATENATE (TEXT {%d+}\r\n%s URL \"%s\" URL \"imap://alice%%40example.com@mail.example.com"
        b"/INBOX;UIDVALIDITY=%d/;UID=1/;SECTION=1\" TEXT {%d+}\r\n%s)"
        % (len(head), head, url, validity, len(tail), tail))
    assert re.match(rb"OK \[APPENDUID \d+ 1\]", tagged), tagged
    alice.ok("SELECT Drafts")
    [line] = alice.ok("FETCH 1 (FLAGS BODY.PEEK[1])")
    assert b"\\Draft" in line
    assert line.endswith(b"caf=C3=A9 au lait)")
    [line] = alice.ok("FETCH 1 BODY.PEEK[1.MIME]")
    assert b"Content-Transfer-Encoding: quoted-printable" in line


def test_catenate_badurl_and_toobig(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", message("source"))
    for url in (b"/INBOX;UIDVALIDITY=1/;UID=99", b"/Nowhere/;UID=1",
                b"imap://bob%40example.com@mail.example.com/INBOX/;UID=1", b"/INBOX/;UID=1/;SECTION=7.TEXT",
                b"/INBOX/;UID=1;URLAUTH=anonymous", b"http://example.com/"):
        tagged, _ = alice.transact(b'APPEND Drafts CATENATE (URL "%s")' % url)
        assert tagged.startswith(b"NO [BADURL "), (url, tagged)
    # A MULTIAPPEND whose second message has a bad URL stores nothing.
    body = message("first")
    tagged, _ = alice.transact(b'APPEND Drafts {%d+}\r\n%s CATENATE (URL "/INBOX/;UID=42")'
                               % (len(body), body))
    assert tagged.startswith(b"NO [BADURL /INBOX/;UID=42]"), tagged
    assert b"MESSAGES 0" in alice.ok("STATUS Drafts (MESSAGES)")[0]
    alice.expect("BAD", b"APPEND Drafts CATENATE ()")
    alice.expect("BAD", b'APPEND Drafts CATENATE (TEXT "quoted")')


def test_catenate_result_over_appendlimit_is_toobig(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server("[limits]\nmax_message_size = 4000\n")
    server.add_domain("example.com")
    server.add_user("alice@example.com")
    deliver(server, "alice@example.com", message("source", body="x" * 1000 + "\r\n"))
    with Wire(server.port("imap")) as w:
        w.login()
        three = b" ".join([b'URL "/INBOX/;UID=1"'] * 3)
        tagged, _ = w.transact(b"APPEND Drafts CATENATE (" + three + b")")
        assert tagged.startswith(b"OK"), tagged
        # RFC 4469 §5: the assembled message passes APPENDLIMIT -> NO [TOOBIG]
        five = b" ".join([b'URL "/INBOX/;UID=1"'] * 5)
        tagged, _ = w.transact(b"APPEND Drafts CATENATE (" + five + b")")
        assert tagged.startswith(b"NO [TOOBIG]"), tagged
        assert b"MESSAGES 1" in w.ok("STATUS Drafts (MESSAGES)")[0]


# --- SEARCHRES (RFC 5182) ------------------------------------------------------------------------


@pytest.fixture
def inbox(server, alice: Wire) -> Wire:  # type: ignore[no-untyped-def]
    for i in range(1, 7):
        deliver(server, "alice@example.com", message(f"subject {i}", f"body {i}\r\n"),
                flags=("\\Seen",) if i % 2 else ())
    alice.ok("SELECT INBOX")
    return alice


def test_searchres_save_and_use(inbox: Wire) -> None:
    [caps] = inbox.ok("CAPABILITY")
    assert b"SEARCHRES" in caps.split()
    # RFC 5182 §2.1: SAVE alone answers no ESEARCH
    assert inbox.ok("SEARCH RETURN (SAVE) UNSEEN") == []
    assert inbox.ok("FETCH $ (UID)") == [b"* 2 FETCH (UID 2)", b"* 4 FETCH (UID 4)", b"* 6 FETCH (UID 6)"]
    assert inbox.ok("UID SEARCH UID $ SUBJECT \"4\"") == [b"* SEARCH 4"]
    assert inbox.ok("SEARCH NOT $") == [b"* SEARCH 1 3 5"]
    inbox.ok("STORE $ +FLAGS.SILENT (\\Flagged)")
    assert inbox.ok("SEARCH FLAGGED") == [b"* SEARCH 2 4 6"]
    # SAVE with other options: the ESEARCH comes too; MIN/MAX alone save just those.
    [line] = inbox.ok("SEARCH RETURN (SAVE MIN MAX) FLAGGED")
    assert line.endswith(b"MIN 2 MAX 6")
    assert inbox.ok("UID FETCH $ (UID)") == [b"* 2 FETCH (UID 2)", b"* 6 FETCH (UID 6)"]
    tagged, _ = inbox.transact("UID COPY $ Archive")
    assert tagged.startswith(b"OK [COPYUID"), tagged
    [line] = inbox.ok("UID SEARCH RETURN (SAVE COUNT) UID 1:3")
    assert line.endswith(b") UID COUNT 3")
    inbox.ok("STORE $ +FLAGS.SILENT (\\Deleted)")
    inbox.ok("UID EXPUNGE $")
    assert inbox.ok("SEARCH ALL") == [b"* SEARCH 1 2 3"]
    # The expunged messages left "$".
    assert inbox.ok("SEARCH $") == [b"* SEARCH"]


def test_searchres_reset_rules(inbox: Wire) -> None:
    # Before any SAVE "$" is empty.
    assert inbox.ok("SEARCH $") == [b"* SEARCH"]
    inbox.ok("SEARCH RETURN (SAVE) ALL")
    assert inbox.ok("SEARCH $") == [b"* SEARCH 1 2 3 4 5 6"]
    # A failing SEARCH with SAVE empties it (RFC 5182 §2.1).
    inbox.expect("BAD", "SEARCH RETURN (SAVE) NOSUCHKEY")
    assert inbox.ok("SEARCH $") == [b"* SEARCH"]
    inbox.ok("SEARCH RETURN (SAVE) ALL")
    # SELECT (even of the same mailbox), EXAMINE, UNSELECT, CLOSE reset it.
    inbox.ok("SELECT INBOX")
    assert inbox.ok("SEARCH $") == [b"* SEARCH"]
    inbox.ok("SEARCH RETURN (SAVE) ALL")
    inbox.ok("UNSELECT")
    inbox.ok("EXAMINE INBOX")
    assert inbox.ok("FETCH $ UID") == []
    inbox.expect("BAD", "FETCH $,1 UID")  # "$" stands alone


# --- MULTISEARCH (RFC 7377) ----------------------------------------------------------------------


@pytest.fixture
def folders(server, alice: Wire) -> Wire:  # type: ignore[no-untyped-def]
    alice.ok("CREATE Projects")
    alice.ok("CREATE Projects/Alpha")
    alice.ok("CREATE Projects/Alpha/Deep")
    alice.ok("SUBSCRIBE Projects")
    for folder, subjects in (("INBOX", ["report q1", "lunch", "report q2"]), ("Sent", ["re: report"]),
                             ("Projects", ["plan"]), ("Projects/Alpha", ["alpha report"]),
                             ("Projects/Alpha/Deep", ["deep report"])):
        for subject in subjects:
            deliver(server, "alice@example.com", message(subject), folder=folder)
    return alice


def _by_mailbox(lines: list[bytes]) -> dict[str, bytes]:
    out = {}
    for line in lines:
        m = re.match(rb'\* ESEARCH \(TAG "t\d+" MAILBOX "?([^" ]+)"? UIDVALIDITY \d+\) UID(.*)', line)
        assert m, line
        out[m.group(1).decode()] = m.group(2).strip()
    return out


def test_multisearch_personal_and_filters(folders: Wire) -> None:
    [caps] = folders.ok("CAPABILITY")
    assert b"MULTISEARCH" in caps.split()
    got = _by_mailbox(folders.ok('ESEARCH IN (personal) RETURN (ALL COUNT) SUBJECT "report"'))
    assert got == {"INBOX": b"ALL 1,3 COUNT 2", "Sent": b"ALL 1 COUNT 1", "Projects/Alpha": b"ALL 1 COUNT 1",
                   "Projects/Alpha/Deep": b"ALL 1 COUNT 1"}
    got = _by_mailbox(folders.ok('ESEARCH IN (subtree Projects) SUBJECT "report"'))
    assert got == {"Projects/Alpha": b"ALL 1", "Projects/Alpha/Deep": b"ALL 1"}
    got = _by_mailbox(folders.ok('ESEARCH IN (subtree-one "Projects") ALL'))
    assert set(got) == {"Projects", "Projects/Alpha"}
    got = _by_mailbox(folders.ok('ESEARCH IN (inboxes mailboxes (Sent Nowhere)) RETURN (MIN) ALL'))
    assert got == {"INBOX": b"MIN 1", "Sent": b"MIN 1"}
    got = _by_mailbox(folders.ok("ESEARCH IN (subscribed) ALL"))
    assert "Projects" in got and "Projects/Alpha" not in got
    # COUNT alone reports empty folders too (per-folder counts).
    got = _by_mailbox(folders.ok('ESEARCH IN (mailboxes (Drafts INBOX)) RETURN (COUNT) ALL'))
    assert got == {"INBOX": b"COUNT 3", "Drafts": b"COUNT 0"}


def test_multisearch_selected_and_errors(folders: Wire) -> None:
    # Without IN: the selected mailbox; none selected -> nothing.
    assert folders.ok("ESEARCH ALL") == []
    folders.ok("SELECT INBOX")
    assert _by_mailbox(folders.ok('ESEARCH SUBJECT "lunch"')) == {"INBOX": b"ALL 2"}
    assert _by_mailbox(folders.ok('ESEARCH IN (selected) SUBJECT "lunch"')) == {"INBOX": b"ALL 2"}
    folders.expect("BAD", "ESEARCH IN (personal) RETURN (SAVE) ALL")  # RFC 7377 §2
    folders.expect("BAD", "ESEARCH IN (everything) ALL")
    folders.expect("BAD", "ESEARCH IN (personal (DEPTH 1)) ALL")
    folders.expect("BAD", "ESEARCH IN () ALL")
    folders.ok("NOOP")


# --- PARTIAL (RFC 9394) and ESORT --------------------------------------------------------------


def test_search_and_sort_partial(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    for i in range(1, 11):
        deliver(server, "alice@example.com", message(f"subject {chr(ord('k') - i)}"))
    alice.ok("SELECT INBOX")
    [caps] = alice.ok("CAPABILITY")
    assert b"PARTIAL" in caps.split()
    [line] = alice.ok("SEARCH RETURN (PARTIAL 1:3 COUNT) ALL")
    assert line.endswith(b"PARTIAL (1:3 1:3) COUNT 10"), line
    [line] = alice.ok("UID SEARCH RETURN (PARTIAL -1:-4) ALL")
    assert line.endswith(b"UID PARTIAL (-1:-4 7:10)"), line
    [line] = alice.ok("SEARCH RETURN (PARTIAL 20:30) ALL")
    assert line.endswith(b"PARTIAL (20:30 NIL)"), line
    alice.expect("BAD", "SEARCH RETURN (PARTIAL 1:3 ALL) ALL")  # RFC 9394 §3
    alice.expect("BAD", "SEARCH RETURN (PARTIAL 0:3) ALL")
    alice.expect("BAD", "SEARCH RETURN (PARTIAL -1:3) ALL")
    # SORT: positions in the sorted order (subjects run j, i, h ... a).
    [line] = alice.ok("SORT RETURN (PARTIAL 1:3) (SUBJECT) UTF-8 ALL")
    assert line.endswith(b") PARTIAL (1:3 10,9,8)"), line
    [line] = alice.ok("SORT RETURN (COUNT PARTIAL -1:-2) (SUBJECT) UTF-8 ALL")
    assert line.endswith(b"COUNT 10 PARTIAL (-1:-2 2,1)"), line
    # ESEARCH with PARTIAL over several folders.
    got = alice.ok("ESEARCH IN (inboxes) RETURN (PARTIAL 2:3) ALL")
    assert got[0].endswith(b"UID PARTIAL (2:3 2:3)"), got


# --- CONTEXT=SEARCH (RFC 5267 §4) ------------------------------------------------------------------


def test_search_update_and_cancelupdate(server, inbox: Wire) -> None:  # type: ignore[no-untyped-def]
    [caps] = inbox.ok("CAPABILITY")
    assert b"CONTEXT=SEARCH" in caps.split()
    tag = inbox.tag()
    inbox.send(tag + b" UID SEARCH RETURN (UPDATE) UNSEEN\r\n")
    status, lines = inbox.until(tag)
    assert status.startswith(b"OK") and lines == [b'* ESEARCH (TAG "%s") UID ALL 2,4,6' % tag]
    with Wire(server.port("imap")) as other:
        other.login()
        other.ok("SELECT INBOX")
        other.ok("STORE 4 +FLAGS (\\Seen)")
        other.ok("STORE 3 -FLAGS (\\Seen)")
        other.ok("STORE 1 +FLAGS (\\Flagged)")  # changes, but stays out of the result
    deliver(server, "alice@example.com", message("new one"))
    lines = inbox.ok("NOOP")
    assert b"* 7 EXISTS" in lines
    assert b'* ESEARCH (TAG "%s") UID REMOVEFROM (0 4)' % tag in lines, lines
    assert b'* ESEARCH (TAG "%s") UID ADDTO (0 3,7)' % tag in lines, lines
    assert not any(b"1" in line.split(b"(0 ")[-1] for line in lines if b"ESEARCH" in line)
    # Nothing changed: nothing more.
    assert [line for line in inbox.ok("NOOP") if b"ESEARCH" in line] == []
    # While IDLE the updates come with the other untagged data.
    inbox.send(b"i1 IDLE\r\n")
    assert inbox.line().startswith(b"+ ")
    with Wire(server.port("imap")) as other:
        other.login()
        other.ok("SELECT INBOX")
        other.ok("UID STORE 7 +FLAGS (\\Seen)")
    pushed = [inbox.line() for _ in range(2)]
    assert pushed[1] == b'* ESEARCH (TAG "%s") UID REMOVEFROM (0 7)' % tag, pushed
    inbox.send(b"DONE\r\n")
    inbox.until(b"i1")
    inbox.expect("BAD", 'CANCELUPDATE "nosuch"')
    inbox.ok(b'CANCELUPDATE "%s"' % tag)
    deliver(server, "alice@example.com", message("after cancel"))
    assert [line for line in inbox.ok("NOOP") if b"ESEARCH" in line] == []


def test_search_update_ends_with_the_selection(server, inbox: Wire) -> None:  # type: ignore[no-untyped-def]
    tag = inbox.tag()
    inbox.send(tag + b" SEARCH RETURN (COUNT UPDATE) UNSEEN\r\n")
    status, lines = inbox.until(tag)
    assert lines == [b'* ESEARCH (TAG "%s") COUNT 3' % tag]
    inbox.ok("SELECT INBOX")
    deliver(server, "alice@example.com", message("new one"))
    assert [line for line in inbox.ok("NOOP") if b"ESEARCH" in line] == []
    inbox.expect("BAD", b'CANCELUPDATE "%s"' % tag)


# --- real clients ----------------------------------------------------------------------------------


def test_imapclient_multiappend_and_binary(server) -> None:  # type: ignore[no-untyped-def]
    import datetime

    from imapclient import IMAPClient

    from tests.conftest import PASSWORD

    c = IMAPClient("127.0.0.1", port=server.port("imap"), ssl=False, timeout=20)
    try:
        c.login("alice@example.com", PASSWORD)
        assert {b"MULTIAPPEND", b"BINARY", b"SEARCHRES", b"MULTISEARCH"} <= set(c.capabilities())
        when = datetime.datetime(2024, 2, 3, 4, 5, 6, tzinfo=datetime.UTC)
        reply = c.multiappend("Drafts", [message("client one"),
                                         {"msg": message("client two"), "flags": ["\\Draft"], "date": when}])
        assert reply[0] == "OK" and re.match(rb"\[APPENDUID \d+ 1:2\]", reply[1][0]), reply
        c.select_folder("Drafts")
        got = c.fetch([1, 2], ["FLAGS", "INTERNALDATE", "BINARY.PEEK[1]", "BINARY.SIZE[1]"])
        assert b"\\Draft" in got[2][b"FLAGS"] and b"\\Draft" not in got[1][b"FLAGS"]
        assert got[2][b"INTERNALDATE"].astimezone(datetime.UTC) == when
        assert got[1][b"BINARY[1]"] == b"hi there\r\n"
        assert got[1][b"BINARY.SIZE[1]"] == len(b"hi there\r\n")
    finally:
        try:
            c.logout()
        except Exception:
            pass
