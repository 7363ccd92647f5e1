"""IMAP command semantics (issues 15 and 16): transcript tests against the
real server, each for a deviation that was found and fixed."""

from __future__ import annotations

import pytest

from tests.protocols.imap_support import Wire, deliver, message


@pytest.fixture
def alice(server):  # type: ignore[no-untyped-def]
    with Wire(server.port("imap")) as w:
        w.login()
        yield w


@pytest.fixture
def other(server):  # type: ignore[no-untyped-def]
    """A second session of the same user."""
    with Wire(server.port("imap")) as w:
        w.login()
        yield w


def _fill(server, n: int = 3) -> None:  # type: ignore[no-untyped-def]
    for i in range(1, n + 1):
        deliver(server, "alice@example.com", message(f"subject {i}", f"body {i}\r\n"))


# --- issue 15: keywords, expunged messages, mailbox names ------------------------------------


def test_keyword_set_by_another_session_is_announced_before_use(server, alice: Wire,  # type: ignore[no-untyped-def]
                                                                other: Wire) -> None:
    _fill(server, 1)
    alice.ok("SELECT INBOX")
    other.ok("SELECT INBOX")
    other.ok("STORE 1 +FLAGS ($Label3)")
    lines = alice.ok("NOOP")
    # RFC 3501 §7.2.6: FLAGS (and PERMANENTFLAGS) before the FETCH using it.
    flags = next(i for i, line in enumerate(lines) if line.startswith(b"* FLAGS ("))
    perm = next(i for i, line in enumerate(lines) if line.startswith(b"* OK [PERMANENTFLAGS ("))
    fetch = next(i for i, line in enumerate(lines) if b"FETCH" in line)
    assert b"$Label3" in lines[flags] and b"$Label3" in lines[perm] and b"\\*" in lines[perm]
    assert flags < fetch and perm < fetch and b"$Label3" in lines[fetch]
    # Told once: the next change with the same keyword comes without FLAGS.
    other.ok("STORE 1 +FLAGS (\\Flagged)")
    lines = alice.ok("NOOP")
    assert not any(line.startswith(b"* FLAGS") for line in lines) and any(b"FETCH" in x for x in lines)


def test_keyword_of_another_session_seen_by_fetch_is_announced(server, alice: Wire,  # type: ignore[no-untyped-def]
                                                               other: Wire) -> None:
    _fill(server, 1)
    alice.ok("SELECT INBOX")
    other.ok("SELECT INBOX")
    other.ok("STORE 1 +FLAGS.SILENT ($Work)")
    lines = alice.ok("FETCH 1 (FLAGS)")
    flags = next(i for i, line in enumerate(lines) if line.startswith(b"* FLAGS ("))
    fetch = next(i for i, line in enumerate(lines) if line.startswith(b"* 1 FETCH") and b"$Work" in line)
    assert flags < fetch and b"$Work" in lines[flags]


def test_fetch_of_a_message_expunged_elsewhere_answers_the_rest_ok(server, alice: Wire,  # type: ignore[no-untyped-def]
                                                                   other: Wire) -> None:
    _fill(server, 3)
    alice.ok("SELECT INBOX")
    other.ok("SELECT INBOX")
    other.ok("STORE 2 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    # RFC 2180 §4.1.3: the other messages' data, and OK (no EXPUNGE during FETCH).
    status, lines = alice.transact("FETCH 1:3 (UID RFC822.SIZE BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
    assert status.startswith(b"OK"), status
    assert [line.split(b" ")[1] for line in lines if b"RFC822.SIZE" in line] == [b"1", b"3"]
    assert not any(b"EXPUNGE" in line for line in lines)
    status, lines = alice.transact("FETCH 1:3 (INTERNALDATE)")
    assert status.startswith(b"OK") and len([x for x in lines if b"INTERNALDATE" in x]) == 2
    assert alice.ok("NOOP") == [b"* 2 EXPUNGE"]


@pytest.mark.parametrize("name", ['"&Jjo"', '"&AGE-"', '"a&b"'])
def test_invalid_modified_utf7_names_get_no_not_bad(server, alice: Wire, name: str) -> None:  # type: ignore[no-untyped-def]
    _fill(server, 1)
    # RFC 3501 §7.1.5: BAD is for syntax; these are valid strings naming no folder.
    for command in (f"SELECT {name}", f"EXAMINE {name}", f"STATUS {name} (MESSAGES)",
                    f"CREATE {name}", f"DELETE {name}", f"RENAME {name} x", f"RENAME INBOX {name}",
                    f"SUBSCRIBE {name}", f"UNSUBSCRIBE {name}", f"GETQUOTAROOT {name}"):
        tagged, _ = alice.expect("NO", command)
        assert b"modified UTF-7" in tagged, (command, tagged)
    assert alice.ok(f"LIST \"\" {name}") == []
    assert alice.ok(f"LIST \"\" (INBOX {name})") == [b'* LIST (\\HasNoChildren) "/" INBOX']
    assert alice.ok(f"LSUB \"\" {name}") == []
    alice.ok("SELECT INBOX")
    alice.expect("NO", f"COPY 1:* {name}")
    alice.expect("NO", f"MOVE 1:* {name}")
    tagged, _ = alice.expect("NO", f"APPEND {name} {{5+}}\r\nhello")
    assert b"TRYCREATE" not in tagged  # CREATE would fail too


# --- LIST-EXTENDED (RFC 5258) -------------------------------------------------------------


def test_recursivematch_needs_a_selection_option_other_than_remote(alice: Wire) -> None:
    alice.expect("BAD", 'LIST (RECURSIVEMATCH) "" "*"')
    alice.expect("BAD", 'LIST (RECURSIVEMATCH REMOTE) "" "*"')
    alice.ok('LIST (REMOTE) "" "INBOX"')
    alice.ok('LIST (RECURSIVEMATCH SUBSCRIBED REMOTE) "" "*"')


def test_childinfo_only_for_parents_not_matched_themselves(alice: Wire) -> None:
    for name in ("Fruit", "Fruit/Apple", "Veg", "Veg/Leek"):
        alice.ok(f"CREATE {name}")
    for name in ("Fruit", "Fruit/Apple", "Veg/Leek"):
        alice.ok(f"SUBSCRIBE {name}")
    lines = alice.ok('LIST (SUBSCRIBED RECURSIVEMATCH) "" "%"')
    fruit = [x for x in lines if b' "/" Fruit' in x]
    veg = [x for x in lines if b' "/" Veg' in x]
    # Fruit is subscribed itself: listed for that, without CHILDINFO.
    assert fruit == [b'* LIST (\\HasChildren \\Subscribed) "/" Fruit'], lines
    # Veg is not subscribed, its child is: listed for the child's sake.
    assert veg == [b'* LIST (\\HasChildren) "/" Veg ("CHILDINFO" ("SUBSCRIBED"))'], lines


# --- issue 16: LIST patterns ---------------------------------------------------------------


def test_hostile_list_pattern_answers_at_once(alice: Wire) -> None:
    # A regex built from this pattern backtracked for minutes on a 250-char
    # name; the socket's 10 s timeout fails the test if it still does.
    long_name = "x" * 240
    alice.ok(f"CREATE {long_name}")
    alice.ok(f"SUBSCRIBE {long_name}")
    alice.ok(f"SUBSCRIBE {'z' * 240}")  # a subscription need not name a folder
    assert alice.ok('LIST "" "*x*x*x*x*x*xy"') == []
    assert alice.ok('LSUB "" "*z*z*z*z*z*z*z*z*zy"') == []
    assert alice.ok('LSUB "" "*x*x*x*x*x*x*x*x*xy"') == []
    assert alice.ok('LIST "" "%x%x%x%x%x%x%x%x%xy"') == []
    [line] = alice.ok('LIST "" "*x*x*x*x*x*x"')
    assert line.endswith(long_name.encode())


# --- CONDSTORE (RFC 7162) --------------------------------------------------------------------


def _modseq(wire: Wire, seq: int) -> int:
    [line] = [x for x in wire.ok(f"FETCH {seq} (MODSEQ)") if x.startswith(b"* %d FETCH" % seq)]
    return int(line.split(b"MODSEQ (")[1].split(b")")[0])


def test_fetch_modseq_enabling_condstore_reports_highestmodseq(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    _fill(server, 2)
    lines = alice.ok("SELECT INBOX")
    [selected] = [x for x in lines if x.startswith(b"* OK [HIGHESTMODSEQ ")]
    lines = alice.ok("FETCH 1 (MODSEQ)")
    # RFC 7162 §3.1: the first CONDSTORE enabling command on a selected mailbox.
    assert lines[0] == selected and lines[1].startswith(b"* 1 FETCH"), lines
    # Once only.
    assert not any(b"HIGHESTMODSEQ" in x for x in alice.ok("FETCH 2 (MODSEQ)"))


def test_esearch_min_max_report_the_modseq_of_the_returned_message(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    _fill(server, 3)
    alice.ok("SELECT INBOX")
    alice.ok("STORE 2 +FLAGS.SILENT (\\Flagged)")
    alice.ok("STORE 1 +FLAGS.SILENT (\\Answered)")
    alice.ok("STORE 3 +FLAGS.SILENT (\\Seen)")
    m1, m2, m3 = _modseq(alice, 1), _modseq(alice, 2), _modseq(alice, 3)
    assert m2 < m1 < m3

    def esearch(returns: str) -> bytes:
        [line] = [x for x in alice.ok(f"SEARCH RETURN ({returns}) MODSEQ 1") if x.startswith(b"* ESEARCH")]
        return line

    # RFC 4731 §3.2 / RFC 7162 §3.1.5: MIN (or MAX) alone -> that message's MODSEQ.
    assert esearch("MIN").endswith(b"MIN 1 MODSEQ %d" % m1)
    assert esearch("MAX").endswith(b"MAX 3 MODSEQ %d" % m3)
    alice.ok("STORE 1 +FLAGS.SILENT (\\Draft)")
    m1 = _modseq(alice, 1)
    assert esearch("MIN").endswith(b"MIN 1 MODSEQ %d" % m1)
    assert esearch("MAX").endswith(b"MAX 3 MODSEQ %d" % m3)
    assert esearch("MIN MAX").endswith(b"MODSEQ %d" % max(m1, m3))
    assert esearch("COUNT").endswith(b"COUNT 3 MODSEQ %d" % max(m1, m2, m3))


# --- MOVE (RFC 6851) ---------------------------------------------------------------------------


def test_move_into_the_selected_folder_itself(server, alice: Wire, other: Wire) -> None:  # type: ignore[no-untyped-def]
    _fill(server, 2)
    alice.ok("SELECT INBOX")
    other.ok("SELECT INBOX")
    alice.ok("STORE 1 +FLAGS.SILENT (\\Flagged $Keep)")
    # RFC 6851 §3.3: legal, a COPY then an expunge: the message gets a new UID.
    lines = alice.ok("MOVE 1 INBOX")
    copyuid = [x for x in lines if x.startswith(b"* OK [COPYUID ")]
    assert len(copyuid) == 1 and copyuid[0].split(b"]")[0].split(b" ")[4:] == [b"1", b"3"], lines
    assert b"* 1 EXPUNGE" in lines and b"* 2 EXISTS" in lines
    assert lines.index(copyuid[0]) < lines.index(b"* 1 EXPUNGE")  # RFC 6851 §4.3
    [line] = [x for x in alice.ok("FETCH 2 (UID FLAGS)") if b"FETCH" in x]
    assert line.startswith(b"* 2 FETCH (UID 3 FLAGS (") and b"\\Flagged" in line and b"$Keep" in line
    assert [x.split(b" ")[4] for x in alice.ok("FETCH 1:* (UID)")] == [b"2)", b"3)"]
    lines = alice.ok("UID MOVE 3 INBOX")
    assert b"* 2 EXPUNGE" in lines and b"* 2 EXISTS" in lines
    # The other session sees one message gone and one new, nothing else.
    lines = other.ok("NOOP")
    assert lines.count(b"* 1 EXPUNGE") == 1 and b"* 2 EXISTS" in lines
    assert [x for x in other.ok("UID SEARCH ALL") if x.startswith(b"* SEARCH")] == [b"* SEARCH 2 4"]


# --- SORT (RFC 5256, RFC 5051, RFC 5957) --------------------------------------------------------


def test_sort_by_address_uses_the_group_name_and_subject_uses_titlecase(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    def raw(sender: str, to: str, subject: str) -> bytes:
        return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
                f"Date: Mon, 1 Jan 2024 10:00:00 +0000\r\n\r\nbody\r\n").encode()

    for sender, to, subject in [
        ("nobody@example.com", "Mygroup: zed@example.com;", "a_b"),   # 1
        ("Mygroup: zed@example.com;", "aaa@example.com", "ab"),        # 2
        ("aaa@example.com", "undisclosed-recipients:;", "a[c"),        # 3
    ]:
        deliver(server, "alice@example.com", raw(sender, to, subject))
    alice.ok("SELECT INBOX")
    # RFC 5256 §3 + RFC 3501 §7.4.2: a group marker first -> the group's name.
    assert alice.ok("SORT (FROM) UTF-8 ALL") == [b"* SORT 3 2 1"]   # aaa < mygroup < nobody
    assert alice.ok("SORT (TO) UTF-8 ALL") == [b"* SORT 2 1 3"]     # aaa < mygroup < undisclosed
    assert alice.ok("SORT (DISPLAYFROM) UTF-8 ALL") == [b"* SORT 3 2 1"]
    # RFC 5051 i;unicode-casemap titlecases: "AB" < "A[C" < "A_B" ("[" and
    # "_" after the letters; case folding put them before).
    assert alice.ok("SORT (SUBJECT) UTF-8 ALL") == [b"* SORT 2 3 1"]
    assert alice.ok("SORT (REVERSE SUBJECT) UTF-8 ALL") == [b"* SORT 1 3 2"]


# --- issue 16: THREAD over a huge References field ------------------------------------------------


def test_thread_with_a_huge_references_field_answers_at_once(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    refs = " ".join(f"<id{i}.abcdefghij.klmnopqrstuvw@example.com>" for i in range(20000))
    deliver(server, "alice@example.com", message("root"))
    deliver(server, "alice@example.com", message("Re: root", extra=f"References: {refs}\r\n"))
    alice.ok("SELECT INBOX")
    # Uncapped, this THREAD took 37 s of CPU; the socket's 10 s timeout fails it.
    [line] = alice.ok("THREAD REFERENCES UTF-8 ALL")
    assert line.startswith(b"* THREAD ") and b"1" in line and b"2" in line


# --- issue 16: folder and subscription caps ----------------------------------------------------------


def test_folder_and_subscription_caps(make_server) -> None:  # type: ignore[no-untyped-def]
    server = make_server("[limits]\nmax_folders = 10\nmax_subscriptions = 9\n")
    server.add_domain("example.com")
    server.add_user("alice@example.com")
    with Wire(server.port("imap")) as w:
        w.login()
        # 7 default folders: 3 more fit, a nested name counts its new parents.
        w.ok("CREATE a")
        tagged, _ = w.expect("NO", "CREATE b/c/d")
        assert tagged.startswith(b"NO [LIMIT]"), tagged
        w.ok("CREATE b/c")
        w.expect("NO", "CREATE x")
        w.expect("NO", "RENAME a q/a")  # a new parent q
        w.ok("RENAME a z")  # a rename alone adds nothing
        # The default folders are subscribed (7): two more.
        w.ok("SUBSCRIBE z")
        w.ok("SUBSCRIBE b")
        tagged, _ = w.expect("NO", "SUBSCRIBE b/c")
        assert tagged.startswith(b"NO [LIMIT]"), tagged
        w.ok("SUBSCRIBE z")  # already subscribed: no change, OK
        w.ok("UNSUBSCRIBE z")
        w.ok("SUBSCRIBE b/c")
        w.ok("NOOP")  # the connection stays usable
