# -*- test-case-name: tests.protocols.test_imap_condstore -*-
"""CONDSTORE (RFC 7162 §3.1) against the real server: HIGHESTMODSEQ at
SELECT and STATUS, FETCH MODSEQ and CHANGEDSINCE, conditional STORE with
MODIFIED, SEARCH MODSEQ, enabling (explicit and implicit), and MODSEQ in
unsolicited FETCH; plus the grammar of the new parameters."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.protocols.imap_support import Wire, deliver, message
from tests.protocols.test_imap_grammar import parse
from xmail.protocols.imap.grammar import GrammarError

_MODSEQ = re.compile(rb"MODSEQ \((\d+)\)")
_HIGHEST = re.compile(rb"\[HIGHESTMODSEQ (\d+)\]")


def modseq_of(line: bytes) -> int:
    m = _MODSEQ.search(line)
    assert m is not None, line
    return int(m.group(1))


def highest_in(lines: list[bytes]) -> int:
    found = [int(m.group(1)) for m in (_HIGHEST.search(line) for line in lines) if m]
    assert len(found) == 1, lines
    return found[0]


@pytest.fixture
def five(server):  # type: ignore[no-untyped-def]
    for i in range(5):
        deliver(server, "alice@example.com", message(f"m{i}"))
    return server


def session(server: Any) -> Wire:
    wire = Wire(server.port("imap"))
    wire.login()
    return wire


def store_highest(server: Any) -> int:
    return server.mailbox("alice@example.com").folder("INBOX").status().highestmodseq


# --- grammar -----------------------------------------------------------------------------------


def test_fetch_modifiers_parse() -> None:
    args = parse(b"a UID FETCH 1:* (FLAGS) (CHANGEDSINCE 0 VANISHED)").args
    assert (args.changed_since, args.vanished) == (0, True)
    assert parse(b"a FETCH 1 (MODSEQ)").args.atts[0].name == "MODSEQ"
    for bad in (b"a FETCH 1 FLAGS (VANISHED)", b"a FETCH 1 FLAGS (CHANGEDSINCE x)",
                b"a FETCH 1 FLAGS (CHANGEDSINCE 1 CHANGEDSINCE 2)", b"a FETCH 1 FLAGS ()",
                b"a FETCH 1 FLAGS (CHANGEDSINCE 9223372036854775808)"):
        with pytest.raises(GrammarError):
            parse(bad)


def test_select_parameters_parse() -> None:
    args = parse(b"a SELECT INBOX (CONDSTORE)").args
    assert args == "INBOX" and args.condstore and args.qresync is None
    args = parse(b"a EXAMINE INBOX (QRESYNC (67890007 90060115194045000 41:211,214:541 (1:5 1:10)))").args
    assert args.condstore and args.qresync.uidvalidity == 67890007
    assert args.qresync.modseq == 90060115194045000
    assert args.qresync.seq_match is not None
    for bad in (b"a SELECT INBOX ()", b"a SELECT INBOX (BOGUS)", b"a SELECT INBOX (QRESYNC (1 0))",
                b"a SELECT INBOX (QRESYNC (1 5 1:*))", b"a SELECT INBOX (QRESYNC (0 5))"):
        with pytest.raises(GrammarError):
            parse(bad)


def test_search_modseq_parses_with_and_without_entry() -> None:
    key = parse(b'a SEARCH MODSEQ "/flags/\\\\draft" all 620162338').args.key.keys[0]
    assert key.args == ("/flags/\\draft", "all", 620162338)
    assert parse(b"a SEARCH MODSEQ 0").args.key.keys[0].args == (0,)
    with pytest.raises(GrammarError):
        parse(b'a SEARCH MODSEQ "/flags/x" bogus 5')


def without_highest(lines: list[bytes]) -> list[bytes]:
    """The lines after the HIGHESTMODSEQ that the first CONDSTORE enabling
    command on a selected mailbox sends (RFC 7162 §3.1)."""
    assert _HIGHEST.search(lines[0]) and lines[0].startswith(b"* OK "), lines
    return lines[1:]


# --- HIGHESTMODSEQ -----------------------------------------------------------------------------


def test_capabilities(server: Any) -> None:
    with session(server) as wire:
        [caps] = wire.ok("CAPABILITY")
        assert {b"CONDSTORE", b"QRESYNC"} <= set(caps.split())


def test_select_and_status_report_highestmodseq(five: Any) -> None:
    with session(five) as wire:
        [status] = wire.ok("STATUS INBOX (HIGHESTMODSEQ MESSAGES)")
        highest = store_highest(five)
        assert status == b"* STATUS INBOX (HIGHESTMODSEQ %d MESSAGES 5)" % highest
        # RFC 7162 §3.1.2.1: every SELECT reports it, CONDSTORE or not.
        assert highest_in(wire.ok("EXAMINE INBOX")) == highest
        assert highest_in(wire.ok("SELECT INBOX (CONDSTORE)")) == highest


# --- FETCH -------------------------------------------------------------------------------------


def test_fetch_modseq_matches_the_store(five: Any) -> None:
    with session(five) as wire:
        wire.ok("SELECT INBOX")
        lines = wire.ok("FETCH 1:* (UID MODSEQ)")
        records = five.mailbox("alice@example.com").folder("INBOX").records()
        # RFC 7162 §3.1: CONDSTORE enabled while selected -> HIGHESTMODSEQ first.
        assert lines.pop(0) == b"* OK [HIGHESTMODSEQ %d] highest" % max(r.modseq for r in records)
        assert lines == [b"* %d FETCH (UID %d MODSEQ (%d))" % (i, r.uid, r.modseq)
                         for i, r in enumerate(records, 1)]


def test_changedsince_returns_exactly_the_changed(five: Any) -> None:
    # RFC 7162 §3.1.4.1 example: FETCH 1:* (FLAGS) (CHANGEDSINCE n)
    with session(five) as wire, session(five) as other:
        highest = highest_in(wire.ok("SELECT INBOX"))
        other.ok("SELECT INBOX")
        other.ok("STORE 2,4 +FLAGS.SILENT (\\Flagged)")
        lines = wire.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {highest})")
        # The answer shows the change: no unsolicited FETCH repeats it.
        fetches = [line for line in lines if b"FETCH" in line]
        assert [line.split()[1] for line in fetches] == [b"2", b"4"]
        assert all(b"FETCH (FLAGS" in line for line in fetches)
        assert all(b"\\Flagged" in line and modseq_of(line) > highest for line in fetches)
        # iOS sends CHANGEDSINCE 0: every message, with MODSEQ.
        lines = wire.ok("UID FETCH 1:* (FLAGS) (CHANGEDSINCE 0)")
        assert len(lines) == 5 and all(b"MODSEQ (" in line and b"UID " in line for line in lines)
        # Nothing changed since the newest MODSEQ.
        assert wire.ok(f"FETCH 1:* (FLAGS) (CHANGEDSINCE {store_highest(five)})") == []


def test_implicit_enable_puts_modseq_in_unsolicited_fetch(five: Any) -> None:
    with session(five) as wire, session(five) as other:
        wire.ok("SELECT INBOX")
        other.ok("SELECT INBOX")
        other.ok("STORE 1 +FLAGS.SILENT (\\Seen)")
        # Not enabled yet: plain RFC 3501 unsolicited FETCH.
        assert wire.ok("NOOP") == [b"* 1 FETCH (UID 1 FLAGS (\\Seen \\Recent))"]
        wire.ok("FETCH 1 (MODSEQ)")  # a CONDSTORE enabling command (§3.1)
        other.ok("STORE 3 +FLAGS.SILENT (\\Answered)")
        [line] = wire.ok("NOOP")
        assert line.startswith(b"* 3 FETCH (UID 3 FLAGS (\\Answered \\Recent) MODSEQ (")
        assert modseq_of(line) == store_highest(five)
        # Once enabled, FETCH FLAGS carries MODSEQ too.
        [line] = wire.ok("FETCH 3 (FLAGS)")
        assert modseq_of(line) == store_highest(five)


# --- STORE UNCHANGEDSINCE ----------------------------------------------------------------------


def test_conditional_store_reports_modified(five: Any) -> None:
    # RFC 7162 §3.1.3 example: another client changed message 2 meanwhile.
    with session(five) as wire, session(five) as other:
        wire.ok("ENABLE CONDSTORE")
        highest = highest_in(wire.ok("SELECT INBOX"))
        other.ok("SELECT INBOX")
        other.ok("STORE 2 +FLAGS.SILENT ($Other)")
        tagged, lines = wire.transact(f"STORE 1:3 (UNCHANGEDSINCE {highest}) +FLAGS (\\Deleted)")
        assert tagged.startswith(b"OK [MODIFIED 2]")
        fetches = [line for line in lines if b"FETCH (FLAGS" in line]
        assert [line.split()[1] for line in fetches] == [b"1", b"3"]
        assert all(b"\\Deleted" in line and modseq_of(line) > highest for line in fetches)
        folder = five.mailbox("alice@example.com").folder("INBOX")
        assert "\\Deleted" not in folder.record(2).flags
        # The unsolicited change of 2 is reported with its MODSEQ.
        assert any(line.startswith(b"* 2 FETCH (UID 2 FLAGS ($Other \\Recent) MODSEQ (") for line in lines)


def test_unchangedsince_zero_fails_everything(five: Any) -> None:
    with session(five) as wire:
        wire.ok("SELECT INBOX")
        tagged, lines = wire.transact("STORE 1:5 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)")
        assert tagged.startswith(b"OK [MODIFIED 1:5]"), tagged
        assert without_highest(lines) == []
        tagged, _ = wire.transact("UID STORE 2,4 (UNCHANGEDSINCE 0) +FLAGS (\\Seen)")
        assert tagged.startswith(b"OK [MODIFIED 2,4]")
        assert five.mailbox("alice@example.com").folder("INBOX").status().unseen == 5


def test_silent_conditional_store_still_sends_modseq(five: Any) -> None:
    # RFC 7162 §3.1.3 (errata 3401 example 3): .SILENT answers MODSEQ only.
    with session(five) as wire:
        wire.ok("SELECT INBOX")
        highest = store_highest(five)
        lines = wire.ok(f"UID STORE 4,2 (UNCHANGEDSINCE {highest}) +FLAGS.SILENT (\\Deleted)")
        records = {r.uid: r for r in five.mailbox("alice@example.com").folder("INBOX").records()}
        assert without_highest(lines) == [b"* 2 FETCH (UID 2 MODSEQ (%d))" % records[2].modseq,
                         b"* 4 FETCH (UID 4 MODSEQ (%d))" % records[4].modseq]


def test_plain_store_without_condstore_is_unchanged(five: Any) -> None:
    with session(five) as wire:
        wire.ok("SELECT INBOX")
        assert wire.ok("STORE 1 +FLAGS (\\Seen)") == [b"* 1 FETCH (FLAGS (\\Seen \\Recent))"]
        assert wire.ok("STORE 2 +FLAGS.SILENT (\\Seen)") == []


# --- SEARCH MODSEQ -----------------------------------------------------------------------------


def test_search_modseq_and_esearch(five: Any) -> None:
    with session(five) as wire:
        wire.ok("SELECT INBOX")
        mark = store_highest(five)
        wire.ok("STORE 2 +FLAGS.SILENT (\\Draft)")
        wire.ok("STORE 5 +FLAGS.SILENT ($Work)")
        top = store_highest(five)
        # RFC 7162 §3.1.5: the highest MODSEQ of the found messages.
        assert without_highest(wire.ok(f"SEARCH MODSEQ {mark + 1}")) == [
            b"* SEARCH 2 5 (MODSEQ %d)" % top]
        assert wire.ok(f'SEARCH MODSEQ "/flags/\\\\draft" all {mark + 1}') == [
            b"* SEARCH 2 5 (MODSEQ %d)" % top]
        assert wire.ok("UID SEARCH DRAFT MODSEQ 1") == [
            b"* SEARCH 2 (MODSEQ %d)" % five.mailbox("alice@example.com").folder("INBOX").record(2).modseq]
        assert wire.ok(f"SEARCH MODSEQ {top + 1}") == [b"* SEARCH"]
        [line] = wire.ok(f"SEARCH RETURN (COUNT) MODSEQ {mark + 1}")
        assert line.endswith(b"COUNT 2 MODSEQ %d" % top), line
        assert wire.ok(f"SORT (REVERSE ARRIVAL) UTF-8 MODSEQ {mark + 1}") == [
            b"* SORT 5 2 (MODSEQ %d)" % top]
        # SEARCH enabled CONDSTORE: STORE replies carry MODSEQ now.
        [line] = wire.ok("STORE 1 +FLAGS (\\Seen)")
        assert modseq_of(line) == store_highest(five)


def test_enable_lists_only_what_it_enabled(server: Any) -> None:
    with session(server) as wire:
        assert wire.ok("ENABLE CONDSTORE X-UNKNOWN") == [b"* ENABLED CONDSTORE"]
        assert wire.ok("ENABLE CONDSTORE") == [b"* ENABLED"]
        assert wire.ok("ENABLE QRESYNC") == [b"* ENABLED QRESYNC"]


def test_imapclient_condstore_and_quota(five: Any) -> None:
    from imapclient import IMAPClient

    from tests.conftest import PASSWORD

    client = IMAPClient("127.0.0.1", port=five.port("imap"), ssl=False)
    try:
        client.login("alice@example.com", PASSWORD)
        assert client.has_capability("CONDSTORE") and client.has_capability("QUOTA")
        assert client.enable("CONDSTORE") == [b"CONDSTORE"]
        info = client.select_folder("INBOX")
        highest = info[b"HIGHESTMODSEQ"]
        assert highest == store_highest(five)
        client.add_flags([3], [b"$Seen-On-Phone"], silent=True)
        changed = client.fetch([1, 2, 3, 4, 5], ["FLAGS"], modifiers=[f"CHANGEDSINCE {highest}"])
        assert list(changed) == [3] and changed[3][b"MODSEQ"] == (store_highest(five),)
        found = client.search(["MODSEQ", highest + 1])
        assert found == [3] and found.modseq == store_highest(five)
        roots, quotas = client.get_quota_root("INBOX")
        assert roots.quota_roots == [""]
        assert {q.resource for q in quotas} == {"MESSAGE"}  # [limits] default: 50000 messages
    finally:
        client.logout()
