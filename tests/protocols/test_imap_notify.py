"""NOTIFY (RFC 5465) over real sockets against a running server: one
session sets NOTIFY, another changes mail; the first hears of it without
asking.  Reads wait for the line to arrive (socket timeout), never sleep."""

from __future__ import annotations

import pytest

from tests.protocols.imap_support import Wire, deliver, message
from xmail.protocols.imap import grammar
from xmail.protocols.imap import notify as notifymod
from xmail.protocols.imap.notify import NotifyState


def _append(wire: Wire, folder: str, data: bytes) -> None:
    wire.send(b"%s APPEND %s {%d+}\r\n" % (wire.tag(), folder.encode(), len(data)) + data + b"\r\n")
    tagged, _ = wire.until(b"t%d" % wire.counter)
    assert tagged.startswith(b"OK"), tagged


@pytest.fixture
def pair(server):
    watcher, other = Wire(server.port("imap")), Wire(server.port("imap"))
    watcher.login()
    other.login()
    yield watcher, other
    watcher.close()
    other.close()


def test_capability_advertises_notify(pair):
    watcher, _ = pair
    (caps,) = watcher.ok("CAPABILITY")
    assert b" NOTIFY" in caps


def test_new_message_in_another_mailbox_sends_status_unasked(pair):
    watcher, other = pair
    watcher.ok("NOTIFY SET (personal (MessageNew MessageExpunge))")
    _append(other, "Sent", message("one"))
    line = watcher.line()  # unsolicited: the watcher sent no command
    assert line.startswith(b"* STATUS Sent (MESSAGES 1 UIDNEXT 2 UIDVALIDITY "), line


def test_expunge_and_flag_change_in_another_mailbox(pair):
    watcher, other = pair
    _append(other, "Drafts", message("d"))
    watcher.ok("NOTIFY SET (mailboxes Drafts (MessageNew MessageExpunge FlagChange))")
    other.ok("SELECT Drafts")
    other.ok("STORE 1 +FLAGS (\\Seen)")
    assert watcher.line().endswith(b"UNSEEN 0)")
    other.ok("STORE 1 +FLAGS (\\Deleted)")
    watcher.line()
    other.ok("EXPUNGE")
    assert watcher.line().startswith(b"* STATUS Drafts (MESSAGES 0 ")


def test_set_status_reports_each_watched_mailbox_but_the_selected(pair):
    watcher, _ = pair
    watcher.ok("SELECT INBOX")
    untagged = watcher.ok("NOTIFY SET STATUS (personal (MessageNew MessageExpunge))")
    names = {line.split(b" ")[2] for line in untagged if line.startswith(b"* STATUS ")}
    assert {b"Sent", b"Drafts", b"Trash"} <= names
    assert b"INBOX" not in names


def test_selected_message_new_fetches_attributes_and_expunge_goes_out_at_once(pair):
    watcher, other = pair
    watcher.ok("SELECT INBOX")
    watcher.ok("NOTIFY SET (selected (MessageNew (UID BODY.PEEK[HEADER.FIELDS (SUBJECT)]) "
               "MessageExpunge FlagChange))")
    _append(other, "INBOX", message("pushed"))
    assert watcher.line() == b"* 1 EXISTS"
    assert watcher.line() == b"* 1 RECENT"
    fetch = watcher.line()
    assert fetch.startswith(b"* 1 FETCH (UID 1 BODY[HEADER.FIELDS (SUBJECT)] {"), fetch
    assert b"Subject: pushed" in fetch
    other.ok("SELECT INBOX")
    other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    assert watcher.line().startswith(b"* 1 FETCH (UID 1 FLAGS (")
    other.ok("EXPUNGE")
    assert watcher.line() == b"* 1 EXPUNGE"


def test_selected_delayed_holds_expunges_for_a_command_that_may_carry_them(pair):
    watcher, other = pair
    _append(other, "INBOX", message("old"))
    watcher.ok("SELECT INBOX")
    watcher.ok("NOTIFY SET (selected-delayed (MessageNew MessageExpunge))")
    other.ok("SELECT INBOX")
    other.ok("STORE 1 +FLAGS.SILENT (\\Deleted)")
    other.ok("EXPUNGE")
    _append(other, "INBOX", message("new"))
    # The expunge came first, yet only the new message is told: the view
    # still holds message 1 until a command may say EXPUNGE.
    line = watcher.line()
    while line.startswith(b"* 1 FETCH"):  # the \Deleted flag change
        line = watcher.line()
    assert line == b"* 2 EXISTS"
    untagged = watcher.ok("NOOP")
    assert b"* 1 EXPUNGE" in untagged


def test_notifications_reach_a_session_in_idle(pair):
    watcher, other = pair
    watcher.ok("NOTIFY SET (inboxes (MessageNew MessageExpunge))")
    watcher.send(b"i1 IDLE\r\n")
    assert watcher.line().startswith(b"+ ")
    _append(other, "INBOX", message("while idle"))
    assert watcher.line().startswith(b"* STATUS INBOX (MESSAGES 1 UIDNEXT 2 ")
    watcher.send(b"DONE\r\n")
    tagged, _ = watcher.until(b"i1")
    assert tagged.startswith(b"OK")


def test_notify_none_stops_notifications(pair):
    watcher, other = pair
    watcher.ok("NOTIFY SET (personal (MessageNew MessageExpunge))")
    watcher.ok("NOTIFY NONE")
    _append(other, "Sent", message("unseen"))
    # The change reached this process before `other` got its OK; a NOTIFY
    # in force would have put the STATUS before NOOP's tagged reply.
    assert not [line for line in watcher.ok("NOOP") if line.startswith(b"* STATUS")]


@pytest.mark.parametrize("command", [
    "NOTIFY SET (personal (MessageNew MessageExpunge AnnotationChange))",
    "NOTIFY SET (personal (MailboxMetadataChange))",
    "NOTIFY SET (personal (SomeVendorEvent))",
])
def test_unsupported_events_get_badevent_and_the_notify_in_force_stays(pair, command):
    watcher, other = pair
    watcher.ok("NOTIFY SET (personal (MessageNew MessageExpunge))")
    tagged, _ = watcher.expect("NO", command)
    assert tagged.startswith(
        b"NO [BADEVENT (MessageNew MessageExpunge FlagChange MailboxName SubscriptionChange)]"), tagged
    _append(other, "Sent", message("still"))
    assert watcher.line().startswith(b"* STATUS Sent (MESSAGES 1 ")


def test_mailbox_name_and_subscription_change_are_told_as_list(pair):
    watcher, other = pair
    watcher.ok("NOTIFY SET (personal (MailboxName SubscriptionChange))")
    other.ok("CREATE Projects")
    assert watcher.line() == b'* LIST () "/" Projects'
    other.ok("RENAME Projects Work")
    assert watcher.line() == b'* LIST () "/" Work ("OLDNAME" (Projects))'
    other.ok("SUBSCRIBE Work")
    assert watcher.line() == b'* LIST (\\Subscribed) "/" Work'
    other.ok("UNSUBSCRIBE Work")
    assert watcher.line() == b'* LIST () "/" Work'
    other.ok("DELETE Work")
    assert watcher.line() == b'* LIST (\\NonExistent) "/" Work'


def test_mailbox_events_outside_the_filter_are_not_told(pair):
    watcher, other = pair
    watcher.ok("NOTIFY SET (subtree Lists (MailboxName))")
    other.ok("CREATE Elsewhere")
    other.ok("CREATE Lists/xmail")
    # Both changes reached this process before `other` had its OKs; what
    # NOTIFY holds goes out before NOOP's tagged reply at the latest.
    lines = [watcher.line()]
    lines += watcher.ok("NOOP")
    assert b'* LIST () "/" Lists/xmail' in lines
    assert not [line for line in lines if b"Elsewhere" in line]


def test_a_folder_created_later_is_watched_for_message_events(pair):
    watcher, other = pair
    watcher.ok("NOTIFY SET (personal (MessageNew MessageExpunge))")
    other.ok("CREATE Later")
    _append(other, "Later", message("late"))
    assert watcher.line().startswith(b"* STATUS Later (MESSAGES 1 UIDNEXT 2 ")


@pytest.mark.parametrize("command", [
    "NOTIFY SET",
    "NOTIFY BOGUS",
    "NOTIFY SET (bogus (MessageNew MessageExpunge))",
    "NOTIFY SET (selected (MessageNew))",
    "NOTIFY SET (selected (MessageExpunge))",
    "NOTIFY SET (selected (FlagChange))",
    "NOTIFY SET (selected (MessageNew MessageExpunge)) (selected-delayed (MessageNew MessageExpunge))",
    "NOTIFY SET (selected (MessageNew MessageExpunge MailboxName))",
    "NOTIFY SET (personal (MessageNew (UID) MessageExpunge))",
    "NOTIFY SET (selected (MessageExpunge (UID) MessageNew))",
    "NOTIFY SET (selected (MessageNew (BODY[]) MessageExpunge))",
    "NOTIFY SET (subtree (MessageNew MessageExpunge))",
])
def test_malformed_notify_is_bad_and_the_session_stays_usable(pair, command):
    watcher, _ = pair
    watcher.expect("BAD", command)
    watcher.ok("NOOP")


def test_notify_before_login_is_bad(server):
    with Wire(server.port("imap")) as wire:
        wire.expect("BAD", "NOTIFY NONE")


def test_grammar_reads_events_filters_and_fetch_attributes():
    from xmail.protocols.imap.tokenizer import Atom, QuotedString

    items = [Atom(b"t1"), Atom(b"NOTIFY"), Atom(b"set"), Atom(b"status"),
             [Atom(b"subtree"), [Atom(b"Lists"), QuotedString(b"A b")],
              [Atom(b"messagenew"), Atom(b"messageexpunge")]],
             [Atom(b"selected"), Atom(b"NONE")]]
    args = grammar.parse_command(items).args
    assert args.status
    first, second = args.groups
    assert (first.filter, first.mailboxes, first.events) == ("subtree", ("Lists", "A b"),
                                                           ("MessageNew", "MessageExpunge"))
    assert (second.filter, second.events) == ("selected", ())


def test_overflow_is_told_once_then_notify_is_off():
    # RFC 5465 §5.8: a client that cannot keep up gets NOTIFICATIONOVERFLOW
    # and then nothing more, as if it had sent NOTIFY NONE.
    kicks = []
    args = grammar.NotifyArgs((grammar.EventGroup("personal", (), ("MessageNew", "MessageExpunge")),))
    state = NotifyState(args, kick=lambda: kicks.append(1), render=lambda n, e: b"STATUS " + n.encode(),
                        max_backlog=3)
    for i in range(5):
        state.changed(f"F{i}")
    assert state.take(None) == [b"* OK [NOTIFICATIONOVERFLOW] notifications stopped, client too slow\r\n"]
    assert state.closed
    state.changed("F9")
    assert state.take(None) == []


def test_a_client_that_stops_reading_gets_overflow_then_nothing(server, pair, monkeypatch):
    # RFC 5465 §5.8 over the wire: the watcher's FETCH of a big message
    # stalls because it does not read; changes pile up past the backlog.
    monkeypatch.setattr(notifymod, "MAX_BACKLOG", 5)
    watcher, other = pair
    deliver(server, "alice@example.com", message("big", body=("y" * 78 + "\r\n") * 300_000))  # 24 MB
    _append(other, "Drafts", message("d"))
    watcher.ok("SELECT INBOX")
    watcher.ok("NOTIFY SET (mailboxes Drafts (MessageNew MessageExpunge FlagChange))")
    watcher.send(b"f1 FETCH 1 BODY.PEEK[]\r\n")  # and read nothing for now
    other.ok("SELECT Drafts")
    for i in range(8):
        other.ok("STORE 1 %sFLAGS (\\Flagged)" % ("+" if i % 2 == 0 else "-"))
    tagged, untagged = watcher.until(b"f1")
    assert tagged.startswith(b"OK")
    assert untagged[-1].startswith(b"* OK [NOTIFICATIONOVERFLOW]"), untagged[-1][:80]
    assert not [line for line in untagged if line.startswith(b"* STATUS")]
    other.ok("STORE 1 +FLAGS (\\Seen)")
    # The change reached this process before `other` had its OK: a NOTIFY
    # still in force would put a STATUS before NOOP's tagged reply.
    assert not [line for line in watcher.ok("NOOP") if line.startswith(b"* STATUS")]


def test_mailbox_names_are_utf8_after_enable_imap4rev2_and_utf7_before(pair):
    """RFC 9051 §6.3.1 / RFC 5465 §5.4: the LIST a NOTIFY sends follows the
    session's naming, like a LIST the client asked for."""
    watcher, other = pair
    watcher.ok("NOTIFY SET (personal (MailboxName))")
    other.ok("CREATE &BB8EQAQ+BDUEOgRC-")  # Проект, modified UTF-7 (RFC 3501 §5.1.3)
    assert watcher.line() == b'* LIST () "/" &BB8EQAQ+BDUEOgRC-'
    watcher.ok("ENABLE IMAP4rev2")
    other.ok("RENAME &BB8EQAQ+BDUEOgRC- Arbeit")
    assert watcher.line() == ('* LIST () "/" Arbeit ("OLDNAME" ("Проект"))').encode()


def test_selected_message_new_has_no_recent_under_imap4rev2(pair):
    watcher, other = pair
    watcher.ok("ENABLE IMAP4rev2")
    watcher.ok("SELECT INBOX")
    watcher.ok("NOTIFY SET (selected (MessageNew (UID) MessageExpunge))")
    _append(other, "INBOX", message("pushed"))
    assert watcher.line() == b"* 1 EXISTS"
    assert watcher.line() == b"* 1 FETCH (UID 1)"
