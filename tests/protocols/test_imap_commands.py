"""Transcript tests against the real server: one exchange per check, the
tagged status and the untagged lines (mox style)."""

from __future__ import annotations

import base64
import re
import time

import pytest
import twisted.mail.imap4  # noqa: F401  (registers "imap4-utf-7", an independent reference codec)

from tests.conftest import PASSWORD
from tests.protocols.imap_support import Wire, deliver, message


@pytest.fixture
def wire(server):  # type: ignore[no-untyped-def]
    with Wire(server.port("imap")) as w:
        yield w


@pytest.fixture
def alice(server, wire):  # type: ignore[no-untyped-def]
    wire.login()
    return wire


# --- any state / not authenticated ---------------------------------------------------------


def test_greeting_and_capabilities(wire: Wire) -> None:
    assert wire.greeting.startswith(b"* OK [CAPABILITY IMAP4rev1 ")
    [caps] = wire.ok("CAPABILITY")
    for cap in (b"IDLE", b"UIDPLUS", b"MOVE", b"SPECIAL-USE", b"CREATE-SPECIAL-USE", b"NAMESPACE",
                b"ID", b"UNSELECT", b"ENABLE", b"CHILDREN", b"LIST-EXTENDED", b"LIST-STATUS",
                b"LITERAL+", b"SASL-IR", b"AUTH=PLAIN", b"AUTH=LOGIN", b"ESEARCH", b"STARTTLS",
                b"APPENDLIMIT=41943040"):
        assert cap in caps.split(), cap
    assert b"LOGINDISABLED" not in caps  # loopback may log in without TLS


def test_noop_and_logout(wire: Wire) -> None:
    wire.ok("NOOP")
    status, untagged = wire.transact("LOGOUT")
    assert status.startswith(b"OK") and untagged == [b"* BYE logging out"]
    with pytest.raises(ConnectionError):
        wire.line()


def test_login_failure_then_success(server, wire: Wire) -> None:  # type: ignore[no-untyped-def]
    tagged, _ = wire.expect("NO", 'LOGIN alice@example.com "wrong"')
    assert b"[AUTHENTICATIONFAILED]" in tagged
    tagged, _ = wire.expect("OK", f'LOGIN ALICE@example.com "{PASSWORD}"')
    assert tagged.startswith(b"OK [CAPABILITY IMAP4rev1")
    assert b"AUTH=PLAIN" not in tagged and b"STARTTLS" not in tagged
    wire.expect("BAD", 'LOGIN alice@example.com "x"')  # not in the authenticated state


def test_authenticate_plain_with_initial_response(wire: Wire) -> None:
    token = base64.b64encode(b"\0alice@example.com\0" + PASSWORD.encode()).decode()
    wire.ok(f"AUTHENTICATE PLAIN {token}")
    wire.ok("SELECT INBOX")


def test_authenticate_plain_with_continuation(wire: Wire) -> None:
    tag = wire.tag()
    wire.send(tag + b" AUTHENTICATE PLAIN\r\n")
    assert wire.line() == b"+ "
    wire.send(base64.b64encode(b"alice@example.com\0alice@example.com\0" + PASSWORD.encode()) + b"\r\n")
    status, _ = wire.until(tag)
    assert status.startswith(b"OK")


def test_authenticate_login_mechanism(wire: Wire) -> None:
    tag = wire.tag()
    wire.send(tag + b" AUTHENTICATE LOGIN\r\n")
    assert wire.line() == b"+ " + base64.b64encode(b"Username:")
    wire.send(base64.b64encode(b"alice@example.com") + b"\r\n")
    assert wire.line() == b"+ " + base64.b64encode(b"Password:")
    wire.send(base64.b64encode(PASSWORD.encode()) + b"\r\n")
    status, _ = wire.until(tag)
    assert status.startswith(b"OK")


def test_authenticate_cancel_and_bad_mechanism(wire: Wire) -> None:
    tag = wire.tag()
    wire.send(tag + b" AUTHENTICATE PLAIN\r\n")
    assert wire.line() == b"+ "
    wire.send(b"*\r\n")
    status, _ = wire.until(tag)
    assert status.startswith(b"BAD")
    wire.expect("NO", "AUTHENTICATE CRAM-MD5")
    wire.expect("BAD", "AUTHENTICATE PLAIN !!!notbase64")
    wire.ok("NOOP")


def test_commands_need_authentication(wire: Wire) -> None:
    for cmd in ("SELECT INBOX", 'LIST "" *', "FETCH 1 FLAGS", "NAMESPACE", "ENABLE X"):
        tagged, _ = wire.expect("BAD", cmd)


def test_id(wire: Wire) -> None:
    untagged = wire.ok('ID ("name" "pytest" "version" "1")')
    assert untagged == [b'* ID ("name" "xmail" "vendor" "xmail")']
    wire.ok("ID NIL")


# --- authenticated state ----------------------------------------------------------------------


def test_namespace_and_enable(alice: Wire) -> None:
    assert alice.ok("NAMESPACE") == [b'* NAMESPACE (("" "/")) NIL NIL']
    assert alice.ok("ENABLE CONDSTORE") == [b"* ENABLED CONDSTORE"]  # RFC 7162 now implemented


def test_list_default_folders_with_special_use(alice: Wire) -> None:
    lines = alice.ok('LIST "" "*"')
    assert b'* LIST (\\HasNoChildren) "/" INBOX' in lines
    assert b'* LIST (\\HasNoChildren \\Sent) "/" Sent' in lines
    for use in (b"\\Drafts", b"\\Trash", b"\\Junk", b"\\Archive"):
        assert any(use in line for line in lines)
    assert alice.ok('LIST "" ""') == [b'* LIST (\\Noselect) "/" ""']


def test_create_hierarchy_and_wildcards(alice: Wire) -> None:
    alice.ok("CREATE Projects/2024/Q1")
    lines = alice.ok('LIST "" "Projects/%"')
    assert lines == [b'* LIST (\\HasChildren) "/" Projects/2024']
    lines = alice.ok('LIST "Projects/" "*"')
    assert b'* LIST (\\HasNoChildren) "/" Projects/2024/Q1' in lines and len(lines) == 2
    assert b'* LIST (\\HasChildren) "/" Projects' in alice.ok('LIST "" "%"')
    tagged, _ = alice.expect("NO", "CREATE Projects")
    assert b"[ALREADYEXISTS]" in tagged
    alice.ok("CREATE Trailing/")
    assert alice.ok('LIST "" Trailing') == [b'* LIST (\\HasNoChildren) "/" Trailing']
    assert b"[ALREADYEXISTS]" in alice.expect("NO", "CREATE inbox")[0]


def test_chinese_folder_names_round_trip(alice: Wire) -> None:
    name = "工作/报告"
    wire_name = name.encode("imap4-utf-7")
    alice.ok(b'CREATE "' + wire_name + b'"')
    lines = alice.ok('LIST "" "*"')
    assert b'* LIST (\\HasNoChildren) "/" ' + wire_name in lines
    alice.ok(b'SELECT "' + wire_name + b'"')
    alice.ok(b'RENAME "' + wire_name + b'" "' + "归档".encode("imap4-utf-7") + b'"')
    assert any("归档".encode("imap4-utf-7") in line for line in alice.ok('LIST "" *'))


def test_delete_and_rename(alice: Wire) -> None:
    alice.ok("CREATE Old/Child")
    alice.ok("RENAME Old New")
    lines = alice.ok('LIST "" "New*"')
    assert b'* LIST (\\HasChildren) "/" New' in lines and b'* LIST (\\HasNoChildren) "/" New/Child' in lines
    alice.ok("DELETE New/Child")
    assert b"[NONEXISTENT]" in alice.expect("NO", "DELETE Nowhere")[0]
    alice.expect("NO", "DELETE INBOX")


def test_rename_inbox_moves_messages(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", message("one"))
    deliver(server, "alice@example.com", message("two"))
    alice.ok("RENAME INBOX Saved")
    assert b"(MESSAGES 2)" in alice.ok("STATUS Saved (MESSAGES)")[0]
    assert b"(MESSAGES 0)" in alice.ok("STATUS INBOX (MESSAGES)")[0]


def test_subscribe_lsub_and_list_subscribed(alice: Wire) -> None:
    alice.ok("CREATE Lists/python")
    alice.ok("SUBSCRIBE Lists/python")
    assert b'* LSUB () "/" Lists/python' in alice.ok('LSUB "" "*"')
    lines = alice.ok('LIST (SUBSCRIBED) "" "Lists/*"')
    assert lines == [b'* LIST (\\HasNoChildren \\Subscribed) "/" Lists/python']
    lines = alice.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    assert b'* LIST (\\HasChildren) "/" Lists ("CHILDINFO" ("SUBSCRIBED"))' in lines
    alice.ok("UNSUBSCRIBE Lists/python")
    assert not any(b"Lists/python" in line for line in alice.ok('LSUB "" "*"'))
    alice.ok("SUBSCRIBE Ghost")  # allowed for names that do not exist
    assert b'* LSUB () "/" Ghost' in alice.ok('LSUB "" "*"')
    assert alice.ok('LIST (SUBSCRIBED) "" "G*"') == [b'* LIST (\\NonExistent \\Subscribed) "/" Ghost']


def test_list_extended_special_use_and_status(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", message("x"))
    lines = alice.ok('LIST (SPECIAL-USE) "" "*"')
    assert len(lines) == 5 and all(b"\\HasNoChildren \\" in line for line in lines)
    lines = alice.ok('LIST "" (INBOX Sent) RETURN (CHILDREN STATUS (MESSAGES UNSEEN))')
    assert lines[0] == b'* LIST (\\HasNoChildren) "/" INBOX'
    assert lines[1] == b"* STATUS INBOX (MESSAGES 1 UNSEEN 1)"
    assert lines[3] == b"* STATUS Sent (MESSAGES 0 UNSEEN 0)"
    lines = alice.ok('LIST "" "*" RETURN (SUBSCRIBED)')
    assert b'* LIST (\\HasNoChildren \\Subscribed) "/" INBOX' in lines


def test_create_special_use(alice: Wire) -> None:
    alice.ok("CREATE Important (USE (\\Flagged))")
    assert alice.ok('LIST "" Important') == [b'* LIST (\\HasNoChildren \\Flagged) "/" Important']
    alice.expect("BAD", "CREATE Other (USE (\\Bogus))")


def test_status(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", message("a"))
    deliver(server, "alice@example.com", message("b"), flags=("\\Seen",))
    [line] = alice.ok("STATUS INBOX (MESSAGES RECENT UIDNEXT UIDVALIDITY UNSEEN)")
    m = re.match(rb"\* STATUS INBOX \(MESSAGES 2 RECENT 2 UIDNEXT 3 UIDVALIDITY \d+ UNSEEN 1\)", line)
    assert m, line
    assert b"[NONEXISTENT]" in alice.expect("NO", "STATUS Nope (MESSAGES)")[0]


def test_append(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    body = message("appended")
    tag = alice.tag()
    alice.send(tag + b' APPEND Drafts (\\Draft $Work) "05-Mar-2021 10:11:12 +0100" {%d}\r\n' % len(body))
    assert alice.line().startswith(b"+ ")
    alice.send(body + b"\r\n")
    status, _ = alice.until(tag)
    assert re.match(rb"OK \[APPENDUID \d+ 1\]", status), status
    alice.ok("SELECT Drafts")
    [line] = alice.ok("FETCH 1 (FLAGS INTERNALDATE RFC822.SIZE)")
    assert line == b'* 1 FETCH (FLAGS ($Work \\Draft \\Recent) INTERNALDATE " 5-Mar-2021 09:11:12 +0000" ' \
                   b"RFC822.SIZE %d)" % len(body)


def test_append_literal_plus_and_trycreate(alice: Wire) -> None:
    body = message("plus")
    tagged, _ = alice.transact(b"APPEND Nowhere {%d+}\r\n" % len(body) + body)
    assert tagged.startswith(b"NO [TRYCREATE]")
    tagged, _ = alice.transact(b"APPEND INBOX {%d+}\r\n" % len(body) + body)
    assert tagged.startswith(b"OK [APPENDUID")


# --- selected state ---------------------------------------------------------------------------


@pytest.fixture
def inbox(server, alice: Wire) -> Wire:  # type: ignore[no-untyped-def]
    for i in range(1, 6):
        deliver(server, "alice@example.com", message(f"subject {i}", f"body number {i}\r\n"),
                flags=("\\Seen",) if i <= 2 else ())
    alice.ok("SELECT INBOX")
    return alice


def test_select_responses(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    for i in range(3):
        deliver(server, "alice@example.com", message(f"s{i}"), flags=("\\Seen",) if i == 0 else ())
    tagged, lines = alice.transact("SELECT INBOX")
    assert tagged == b"OK [READ-WRITE] SELECT completed"
    assert lines[0] == b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft)"
    assert lines[1].startswith(b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft \\*)]")
    assert b"* 3 EXISTS" in lines and b"* 3 RECENT" in lines
    assert any(line.startswith(b"* OK [UNSEEN 2]") for line in lines)
    assert any(line.startswith(b"* OK [UIDVALIDITY ") for line in lines)
    assert any(line.startswith(b"* OK [UIDNEXT 4]") for line in lines)
    # \Recent goes to the first session only.
    with Wire(server.port("imap")) as other:
        other.login()
        assert b"* 0 RECENT" in other.ok("EXAMINE INBOX")


def test_examine_does_not_take_recent(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", message("r"))
    assert b"* 1 RECENT" in alice.ok("EXAMINE INBOX")
    assert b"* 1 RECENT" in alice.ok("EXAMINE INBOX")  # RFC 3501 §6.3.2
    assert b"* 1 RECENT" in alice.ok("SELECT INBOX")
    assert b"* 0 RECENT" in alice.ok("SELECT INBOX")


def test_examine_is_read_only(inbox: Wire) -> None:
    tagged, lines = inbox.transact("EXAMINE INBOX")
    assert tagged.startswith(b"OK [READ-ONLY]")
    assert b"* OK [PERMANENTFLAGS ()] read-only" in lines
    inbox.ok("FETCH 3 BODY[]")
    assert inbox.ok("FETCH 3 FLAGS") == [b"* 3 FETCH (FLAGS ())"]  # no \Seen in EXAMINE
    assert b"[READ-ONLY]" in inbox.expect("NO", "STORE 1 +FLAGS (\\Flagged)")[0]
    inbox.expect("NO", "EXPUNGE")


def test_failed_select_leaves_no_folder_selected(inbox: Wire) -> None:
    inbox.expect("NO", "SELECT Nowhere")
    inbox.expect("BAD", "FETCH 1 FLAGS")


def test_fetch_items(inbox: Wire) -> None:
    [line] = inbox.ok("FETCH 3 (UID RFC822.SIZE ENVELOPE BODY BODYSTRUCTURE)")
    assert line.startswith(b"* 3 FETCH (UID 3 RFC822.SIZE ")
    assert b'ENVELOPE ("Mon, 1 Jan 2024 10:00:00 +0000" "subject 3" ((NIL NIL "bob" "example.com"))' in line
    assert b'BODY ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 15 1)' in line
    assert (b'BODYSTRUCTURE ("TEXT" "PLAIN" ("CHARSET" "us-ascii") NIL NIL "7BIT" 15 1 '
            b"NIL NIL NIL NIL)") in line
    [line] = inbox.ok("FETCH 3 (BODY.PEEK[HEADER.FIELDS (SUBJECT)] BODY.PEEK[TEXT]<5.6>)")
    assert line == (b"* 3 FETCH (BODY[HEADER.FIELDS (SUBJECT)] {22}\r\nSubject: subject 3\r\n\r\n"
                    b" BODY[TEXT]<5> {6}\r\nnumber)")
    [line] = inbox.ok("FETCH 3 (BODY.PEEK[2])")
    assert line == b"* 3 FETCH (BODY[2] NIL)"
    [line] = inbox.ok("FETCH 3 RFC822.HEADER")
    assert line.startswith(b"* 3 FETCH (RFC822.HEADER {")
    assert inbox.ok("FETCH 3 FLAGS") == [b"* 3 FETCH (FLAGS (\\Recent))"]  # RFC822.HEADER does not set \Seen


def test_fetch_body_sets_seen(inbox: Wire) -> None:
    [line] = inbox.ok("FETCH 4 BODY[]")
    assert line.startswith(b"* 4 FETCH (BODY[] {") and line.endswith(b" FLAGS (\\Seen \\Recent))")
    [line] = inbox.ok("FETCH 5 (FLAGS RFC822)")
    assert b"FLAGS (\\Seen \\Recent)" in line
    assert inbox.ok("FETCH 4:5 FLAGS") == [b"* 4 FETCH (FLAGS (\\Seen \\Recent))",
                                          b"* 5 FETCH (FLAGS (\\Seen \\Recent))"]


def test_fetch_macros_and_sequence_sets(inbox: Wire) -> None:
    lines = inbox.ok("FETCH 5:4,1 FAST")
    assert [line.split(b" ")[1] for line in lines] == [b"1", b"4", b"5"]
    assert len(inbox.ok("FETCH * ALL")) == 1
    assert len(inbox.ok("FETCH 1:* FULL")) == 5
    inbox.expect("BAD", "FETCH 6 FLAGS")
    inbox.expect("BAD", "FETCH 1 (BODY[HEADER.FIELDS])")


def test_uid_fetch_includes_uid_and_tolerates_missing(inbox: Wire) -> None:
    assert inbox.ok("UID FETCH 4:100 FLAGS") == [b"* 4 FETCH (UID 4 FLAGS (\\Recent))",
                                                 b"* 5 FETCH (UID 5 FLAGS (\\Recent))"]
    assert inbox.ok("UID FETCH 100:* FLAGS") == [b"* 5 FETCH (UID 5 FLAGS (\\Recent))"]
    assert inbox.ok("UID FETCH 50:60 FLAGS") == []


def test_store(inbox: Wire) -> None:
    assert inbox.ok("STORE 1 +FLAGS (\\Flagged $Work)") == [
        b"* FLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work)",
        b"* OK [PERMANENTFLAGS (\\Answered \\Flagged \\Deleted \\Seen \\Draft $Work \\*)] flags permitted",
        b"* 1 FETCH (FLAGS ($Work \\Flagged \\Seen \\Recent))"]
    assert inbox.ok("STORE 1 -FLAGS.SILENT (\\Flagged)") == []
    assert inbox.ok("STORE 1 FLAGS (\\Answered)") == [b"* 1 FETCH (FLAGS (\\Answered \\Recent))"]
    assert inbox.ok("UID STORE 2 +FLAGS \\Draft") == [b"* 2 FETCH (UID 2 FLAGS (\\Draft \\Seen \\Recent))"]
    [flags] = inbox.ok("SELECT INBOX")[:1]
    assert b"$Work" not in flags  # nobody carries it any more
    inbox.expect("BAD", "STORE 1 +FLAGS (\\Recent)")


def test_search(inbox: Wire) -> None:
    assert inbox.ok("SEARCH UNSEEN") == [b"* SEARCH 3 4 5"]
    assert inbox.ok("SEARCH SUBJECT \"subject 4\"") == [b"* SEARCH 4"]
    assert inbox.ok("UID SEARCH OR SEEN BODY \"number 5\"") == [b"* SEARCH 1 2 5"]
    assert inbox.ok("SEARCH NOT 1:3") == [b"* SEARCH 4 5"]
    assert inbox.ok("SEARCH CHARSET UTF-8 FROM bob SINCE 1-Jan-2000") == [b"* SEARCH 1 2 3 4 5"]
    assert inbox.ok("SEARCH SUBJECT nothing-like-this") == [b"* SEARCH"]
    tagged, _ = inbox.expect("NO", "SEARCH CHARSET X-UNKNOWN ALL")
    assert tagged.startswith(b"NO [BADCHARSET")
    inbox.expect("BAD", "SEARCH FOO")


def test_esearch(inbox: Wire) -> None:
    tag = inbox.tag()
    inbox.send(tag + b" UID SEARCH RETURN (MIN MAX COUNT ALL) UNSEEN\r\n")
    status, lines = inbox.until(tag)
    assert lines == [b'* ESEARCH (TAG "' + tag + b'") UID MIN 3 MAX 5 ALL 3:5 COUNT 3']
    tag = inbox.tag()
    inbox.send(tag + b" SEARCH RETURN () DELETED\r\n")
    status, lines = inbox.until(tag)
    assert lines == [b'* ESEARCH (TAG "' + tag + b'")']


def test_copy_and_uidplus(inbox: Wire) -> None:
    tagged, _ = inbox.expect("OK", "COPY 2:3 Archive")
    m = re.match(rb"OK \[COPYUID (\d+) 2:3 1:2\]", tagged)
    assert m, tagged
    assert b"[TRYCREATE]" in inbox.expect("NO", "COPY 1 Nowhere")[0]
    tagged, _ = inbox.expect("OK", "UID COPY 5,1 Archive")
    assert re.match(rb"OK \[COPYUID \d+ 1,5 3:4\]", tagged), tagged


def test_move(inbox: Wire) -> None:
    tagged, lines = inbox.transact("MOVE 2:3 Trash")
    assert tagged.startswith(b"OK")
    assert re.match(rb"\* OK \[COPYUID \d+ 2:3 1:2\]", lines[0]), lines
    assert lines[1:] == [b"* 3 EXPUNGE", b"* 2 EXPUNGE"]
    tagged, lines = inbox.transact("UID MOVE 5 Trash")
    assert lines[1:] == [b"* 3 EXPUNGE"]
    assert inbox.ok("FETCH 1:* UID") == [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 4)"]
    assert b"(MESSAGES 3)" in inbox.ok("STATUS Trash (MESSAGES)")[0]


def test_expunge_into_recycle(inbox: Wire) -> None:
    inbox.ok("STORE 2,4 +FLAGS.SILENT (\\Deleted)")
    assert inbox.ok("EXPUNGE") == [b"* 4 EXPUNGE", b"* 2 EXPUNGE"]
    assert inbox.ok("FETCH 1:* UID") == [b"* 1 FETCH (UID 1)", b"* 2 FETCH (UID 3)", b"* 3 FETCH (UID 5)"]
    assert b"(MESSAGES 2)" in inbox.ok("STATUS Recycle (MESSAGES)")[0]


def test_uid_expunge_only_named(inbox: Wire) -> None:
    inbox.ok("STORE 1:3 +FLAGS.SILENT (\\Deleted)")
    assert inbox.ok("UID EXPUNGE 2:3") == [b"* 3 EXPUNGE", b"* 2 EXPUNGE"]
    assert inbox.ok("SEARCH DELETED") == [b"* SEARCH 1"]


def test_close_expunges_silently_and_unselect_does_not(inbox: Wire) -> None:
    inbox.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert inbox.ok("UNSELECT") == []
    inbox.ok("SELECT INBOX")
    assert inbox.ok("CLOSE") == []
    inbox.expect("BAD", "FETCH 1 FLAGS")
    assert b"(MESSAGES 4)" in inbox.ok("STATUS INBOX (MESSAGES)")[0]


def test_check(inbox: Wire) -> None:
    inbox.ok("CHECK")


# --- garbage and limits ------------------------------------------------------------------------


def test_pipelined_commands(alice: Wire) -> None:
    alice.send(b"p1 NOOP\r\np2 SELECT INBOX\r\np3 FETCH 1:* FLAGS\r\np4 FETCH 1 FLAGS\r\n")
    status, lines = alice.until(b"p4")
    tagged = [line for line in lines if line.startswith(b"p")]
    assert tagged == [b"p1 OK NOOP completed", b"p2 OK [READ-WRITE] SELECT completed",
                      b"p3 OK FETCH completed"]
    assert status.startswith(b"BAD")  # no message 1 in an empty folder


def test_autologout_is_configured(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server("[limits]\nimap_idle_timeout = 1\n")
    with Wire(server.port("imap")) as w:
        start = time.monotonic()
        assert w.line() == b"* BYE autologout: idle for too long"
        assert time.monotonic() - start < 5


def test_logins_are_audited(server) -> None:  # type: ignore[no-untyped-def]
    import json
    import os

    with Wire(server.port("imap")) as w:
        w.expect("NO", "LOGIN alice@example.com wrong")
        w.login()
        w.ok("LOGOUT")
    path = os.path.join(server.settings.path("log"), "login.log")
    deadline = time.monotonic() + 5
    events: list = []
    while time.monotonic() < deadline:
        with open(path) as f:
            events = [json.loads(line) for line in f if '"imap"' in line]
        if len(events) >= 3:
            break
        time.sleep(0.05)
    assert [(e["event"], e.get("result")) for e in events] == [
        ("login", "fail"), ("login", "ok"), ("logout", None)]
    assert all(e["ip"] == "127.0.0.1" and e["account"].startswith("alice@") for e in events)


def test_fetch_after_delete_of_selected_folder_by_other_session(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    alice.ok("CREATE Doomed")
    alice.ok("SELECT Doomed")
    with Wire(server.port("imap")) as other:
        other.login()
        other.ok("DELETE Doomed")
    tagged, _ = alice.transact("FETCH 1:* FLAGS")
    assert tagged.startswith((b"OK", b"NO"))
    alice.ok("SELECT INBOX")


def test_large_append_is_spooled_and_cleaned_up(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    import glob
    import tempfile

    pattern = tempfile.gettempdir() + "/xmail-imap-literal-*"
    before = set(glob.glob(pattern))
    body = message("large", "".join(f"{i:08d} spooled line\r\n" for i in range(150000)))
    tagged, _ = alice.transact(b"APPEND INBOX {%d+}\r\n" % len(body) + body)
    assert tagged.startswith(b"OK [APPENDUID")
    alice.ok("EXAMINE INBOX")
    [line] = alice.ok("FETCH 1 (RFC822.SIZE BODY.PEEK[])")
    assert line.startswith(b"* 1 FETCH (RFC822.SIZE %d BODY[] {%d}\r\n" % (len(body), len(body)))
    assert line.endswith(body + b")")
    # A refused one is dropped too.
    tagged, _ = alice.transact(b"APPEND Nowhere {%d+}\r\n" % len(body) + body)
    assert tagged.startswith(b"NO [TRYCREATE]")
    assert set(glob.glob(pattern)) == before


def test_sort_and_thread(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", message("banana", "x" * 300, extra="Message-ID: <b@x>\r\n"))
    deliver(server, "alice@example.com", message("Apple", "y"))
    deliver(server, "alice@example.com",
            message("Re: banana", "z", extra="In-Reply-To: <b@x>\r\nReferences: <b@x>\r\n"))
    alice.ok("SELECT INBOX")
    assert alice.ok("SORT (SUBJECT) UTF-8 ALL") == [b"* SORT 2 1 3"]
    assert alice.ok("SORT (REVERSE SIZE) UTF-8 ALL") == [b"* SORT 1 3 2"]
    assert alice.ok("UID SORT (ARRIVAL) UTF-8 NOT SUBJECT apple") == [b"* SORT 1 3"]
    tag = alice.tag()
    alice.send(tag + b" SORT RETURN (COUNT MIN) (SUBJECT) UTF-8 ALL\r\n")
    _, lines = alice.until(tag)
    assert lines == [b'* ESEARCH (TAG "' + tag + b'") MIN 2 COUNT 3']
    assert alice.ok("THREAD ORDEREDSUBJECT UTF-8 ALL") == [b"* THREAD (1 3)(2)"]  # same Date: by sequence
    [line] = alice.ok("UID THREAD REFERENCES UTF-8 ALL")
    assert line.startswith(b"* THREAD (")
    alice.expect("BAD", "SORT (BOGUS) UTF-8 ALL")
    alice.expect("BAD", "THREAD BOGUS UTF-8 ALL")
    assert b"[BADCHARSET" in alice.expect("NO", "SORT (DATE) KOI8-R ALL")[0]


def test_append_to_sent_after_send_save_is_deduplicated(server) -> None:  # type: ignore[no-untyped-def]
    import smtplib

    body = message("sent once", sender="alice@example.com", to="bob@example.com")
    with smtplib.SMTP("127.0.0.1", server.port("submission"), timeout=10) as smtp:
        smtp.login("alice@example.com", PASSWORD)
        smtp.sendmail("alice@example.com", ["bob@example.com"], body)
    with Wire(server.port("imap")) as w:
        w.login()
        deadline = time.monotonic() + 5
        while b"(MESSAGES 1)" not in w.ok("STATUS Sent (MESSAGES)")[0]:
            assert time.monotonic() < deadline, "send-save did not store the message"
            time.sleep(0.05)
        tagged, _ = w.transact(b"APPEND Sent (\\Seen) {%d+}\r\n" % len(body) + body)
        assert tagged.startswith(b"OK [APPENDUID")
        assert b"(MESSAGES 1)" in w.ok("STATUS Sent (MESSAGES)")[0]  # the client's copy was not stored twice


def test_a_deleted_parent_is_listed_noselect_with_its_children(alice: Wire) -> None:
    # RFC 3501 §6.3.4, §6.3.8: "%" must still reach what is below a deleted level.
    alice.ok("CREATE G/H")
    alice.ok("CREATE G/I")
    alice.ok("DELETE G")
    assert b'* LIST (\\Noselect \\HasChildren) "/" G' in alice.ok('LIST "" "%"')
    assert b'* LIST (\\HasNoChildren) "/" G/H' in alice.ok('LIST "" "G/%"')
    extended = alice.ok('LIST "" "%" RETURN (CHILDREN)')
    assert b'* LIST (\\NonExistent \\HasChildren) "/" G' in extended
    alice.expect("NO", "SELECT G")


def test_lsub_percent_returns_the_unsubscribed_parent_noselect(alice: Wire) -> None:
    # RFC 3501 §6.3.9: '"%" to LSUB must return foo, not foo/bar ... \Noselect'.
    alice.ok("CREATE p/q")
    alice.ok("SUBSCRIBE p/q")
    lines = alice.ok('LSUB "" "%"')
    assert lines.count(b'* LSUB (\\Noselect) "/" p') == 1
    assert b'* LSUB () "/" p/q' not in lines
    assert b'* LSUB () "/" p/q' in alice.ok('LSUB "" "*"')


def test_a_recreated_folder_shows_new_mail_as_recent(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    # RFC 3501 §2.3.2: a new UIDVALIDITY starts a new set of UIDs.
    alice.ok("CREATE F")
    for i in range(3):
        deliver(server, "alice@example.com", message(f"old {i}"), folder="F")
    assert b"* 3 RECENT" in alice.ok("SELECT F")
    alice.ok("CLOSE")
    alice.ok("DELETE F")
    alice.ok("CREATE F")
    for i in range(2):
        deliver(server, "alice@example.com", message(f"new {i}"), folder="F")
    assert b"* 2 RECENT" in alice.ok("SELECT F")
