# -*- test-case-name: tests.sieve.test_delivery_daemon -*-
"""Acceptance: filter rules in a running `twistd xmail`, set with xmailctl,
exercised with real SMTP (smtplib, swaks) and read back over IMAP
(imapclient).  A second daemon plays the outside world for redirects
(reached through [transport]), so SRS, the hop mark and DSNs travelling
back are seen on the wire."""

from __future__ import annotations

import email
import email.policy
import smtplib
import subprocess
from typing import Any

import pytest
from imapclient import IMAPClient

from tests.filter.daemon_support import BOB, CAROL, PASSWORD, fetch
from tests.support.daemon import Daemon
from tests.support.wait import wait_until

DAVE = "dave@example.com"
ERIN = "erin@example.com"
OUTSIDE = "friend@other.test"


def message(subject: str, *, sender: str = "alice@sender.test", to: str = BOB, extra: str = "",
            body: str = "hello\r\n") -> bytes:
    return (f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{abs(hash((subject, to, extra)))}@sender.test>\r\n{extra}\r\n{body}").encode()


def send(daemon: Daemon, rcpts: list[str], data: bytes, sender: str = "alice@sender.test") -> Any:
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"]) as smtp:
        return smtp.sendmail(sender, rcpts, data)


def submit(daemon: Daemon, user: str, rcpts: list[str], data: bytes) -> Any:
    with smtplib.SMTP("127.0.0.1", daemon.ports["submission"]) as smtp:
        smtp.login(user, PASSWORD)
        return smtp.sendmail(user, rcpts, data)


def subjects(daemon: Daemon, user: str, folder: str = "INBOX") -> list[str]:
    return [str(email.message_from_bytes(raw, policy=email.policy.default)["Subject"])
            for raw in fetch(daemon, user, folder)]


def put_script(daemon: Daemon, tmp_path: Any, name: str, text: str, *scope: str) -> None:
    path = tmp_path / f"{name}.sieve"
    path.write_text(text)
    daemon.ctl("sieve", "put", *scope, name, str(path))


@pytest.fixture(scope="module")
def other(tmp_path_factory: Any) -> Any:
    """The outside world: other.test with one user."""
    daemon = Daemon(tmp_path_factory.mktemp("other"), listeners=("smtp", "imap"))
    daemon.ctl("domain", "add", "other.test")
    daemon.ctl("user", "add", OUTSIDE, "--password-stdin", stdin=PASSWORD + "\n")
    daemon.start()
    yield daemon
    daemon.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any, other: Daemon) -> Any:
    workdir = tmp_path_factory.mktemp("sieve")
    daemon = Daemon(workdir, listeners=("smtp", "submission", "imap"),
                    extra=f'[transport]\n"other.test" = "127.0.0.1:{other.ports["smtp"]}"\n')
    daemon.ctl("domain", "add", "example.com")
    for user in (BOB, CAROL, DAVE, ERIN):
        daemon.ctl("user", "add", user, "--password-stdin", stdin=PASSWORD + "\n")
    daemon.start()
    yield daemon
    daemon.stop()
    assert daemon.tracebacks() == []


def test_fileinto_flags_create_missing_folder_and_discard(server: Daemon, tmp_path: Any) -> None:
    put_script(server, tmp_path, "rules", r'''
require ["fileinto", "imap4flags", "mailbox"];
if header :contains "subject" "[work]" { fileinto :flags "\\Flagged" "Work"; stop; }
if header :contains "subject" "[new]" { fileinto :create "Projects/New"; stop; }
if header :contains "subject" "[missing]" { fileinto "No Such Folder"; stop; }
if header :contains "subject" "[drop]" { discard; stop; }
''', "--user", BOB)
    server.ctl("sieve", "activate", "--user", BOB, "rules")
    with IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False) as imap:
        imap.login(BOB, PASSWORD)
        imap.create_folder("Work")
    for subject in ("[work] report", "[new] project", "[missing] folder", "[drop] spam", "plain"):
        assert send(server, [BOB], message(subject)) == {}
    assert subjects(server, BOB, "Work") == ["[work] report"]
    assert subjects(server, BOB, "Projects/New") == ["[new] project"]
    assert subjects(server, BOB, "INBOX") == ["[missing] folder", "plain"]
    with IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False) as imap:
        imap.login(BOB, PASSWORD)
        imap.select_folder("Work", readonly=True)
        flags = next(iter(imap.fetch(imap.search(), ["FLAGS"]).values()))[b"FLAGS"]
        assert b"\\Flagged" in flags
    # Every recipient's actions reach the mail log.
    log = server.ctl("log", "mail").stdout
    assert "sieve bob@example.com: fileinto 'Work' flags=(\\flagged)" in log
    assert "discarded" in log and "sieve discard" in log


def test_a_script_error_keeps_the_message_and_is_logged(server: Daemon, tmp_path: Any) -> None:
    # Five redirects: over the limit of four, a runtime error (RFC 5228
    # §2.10.6): the message is kept in INBOX.
    put_script(server, tmp_path, "many", "".join(f'redirect "x{i}@other.test";\n' for i in range(5)),
               "--user", ERIN)
    server.ctl("sieve", "activate", "--user", ERIN, "many")
    assert send(server, [ERIN], message("too many redirects", to=ERIN)) == {}
    assert subjects(server, ERIN) == ["too many redirects"]
    server.ctl("sieve", "remove", "--user", ERIN, "many")


def test_vacation_answers_once_and_never_lists_or_auto_replies(server: Daemon) -> None:
    server.ctl("vacation", "set", CAROL, "--days", "3", "--subject", "Out of office",
               stdin="I am away until Monday.\n")
    first = message("question", sender=DAVE, to=CAROL)
    submit(server, DAVE, [CAROL], first)
    wait_until(lambda: any("Out of office" in s for s in subjects(server, DAVE)), timeout=30,
               what="the vacation reply in dave's INBOX")
    reply = next(email.message_from_bytes(raw, policy=email.policy.default) for raw in fetch(server, DAVE)
                 if b"Out of office" in raw)
    assert reply["Auto-Submitted"].startswith("auto-replied")
    assert reply["In-Reply-To"] == email.message_from_bytes(first)["Message-ID"]
    assert CAROL in reply["From"]
    # Again within the period, a list message, an auto-reply: no new reply.
    submit(server, DAVE, [CAROL], message("second question", sender=DAVE, to=CAROL))
    submit(server, DAVE, [CAROL], message("list post", sender=DAVE, to=CAROL,
                                          extra="List-Id: <l.example.com>\r\n"))
    submit(server, DAVE, [CAROL], message("auto", sender=DAVE, to=CAROL,
                                          extra="Auto-Submitted: auto-replied\r\n"))
    # The three arrive in carol's INBOX (vacation keeps); once they are
    # there the stage has decided about each, and the queue is empty.
    wait_until(lambda: len(subjects(server, CAROL)) >= 4, timeout=30, what="carol's four messages")
    # The replies were queued before each 250: once the queue is empty,
    # every one that was made has been delivered.
    wait_until(lambda: server.ctl("queue", "list").stdout.strip() == "", timeout=30, what="an empty queue")
    assert sum("Out of office" in s for s in subjects(server, DAVE)) == 1
    server.ctl("vacation", "off", CAROL)


def test_two_users_on_vacation_mailing_each_other_get_one_reply_each(server: Daemon) -> None:
    server.ctl("vacation", "set", BOB, "--days", "1", "--subject", "Bob away", stdin="away\n")
    server.ctl("vacation", "set", ERIN, "--days", "1", "--subject", "Erin away", stdin="away\n")
    submit(server, BOB, [ERIN], message("ping", sender=BOB, to=ERIN))
    submit(server, ERIN, [BOB], message("pong", sender=ERIN, to=BOB))
    wait_until(lambda: "Erin away" in subjects(server, BOB) and "Bob away" in subjects(server, ERIN),
               timeout=30, what="one reply each")
    wait_until(lambda: server.ctl("queue", "list").stdout.strip() == "", timeout=30, what="an empty queue")
    assert subjects(server, BOB).count("Erin away") == 1
    assert subjects(server, ERIN).count("Bob away") == 1
    server.ctl("vacation", "off", BOB)
    server.ctl("vacation", "off", ERIN)


def test_forward_to_the_outside_rewrites_the_sender_and_keeps_the_message(server: Daemon,
                                                                         other: Daemon) -> None:
    server.ctl("forward", "set", DAVE, OUTSIDE)
    original = message("forward me", to=DAVE, body="the body, untouched\r\n")
    assert send(server, [DAVE], original) == {}
    wait_until(lambda: fetch(other, OUTSIDE), timeout=30, what="the redirect at other.test")
    arrived = fetch(other, OUTSIDE)[0]
    parsed = email.message_from_bytes(arrived, policy=email.policy.default)
    # SRS: the envelope sender is ours, encoding the original (SPF passes
    # for example.com); our hop is marked; header and body are intact.
    assert parsed["Return-Path"].startswith("<SRS0=") and parsed["Return-Path"].endswith("@example.com>")
    assert "=sender.test=alice@" in parsed["Return-Path"]
    assert parsed["X-Sieve-Redirected-From"] == f"<{DAVE}>"
    assert arrived.endswith(original.split(b"\r\n\r\n", 1)[1])
    assert original.split(b"\r\n\r\n")[0] in arrived
    assert "forward me" not in subjects(server, DAVE)  # forwarded without --keep
    server.ctl("forward", "off", DAVE)


def test_a_bounce_of_a_forward_goes_back_to_the_original_sender(server: Daemon) -> None:
    # erin forwards to an address other.test refuses: its DSN comes to our
    # SRS address, which MX accepts and the queue sends on to the original
    # sender, bob.
    server.ctl("forward", "set", ERIN, "nobody@other.test", "--keep")
    submit(server, BOB, [ERIN], message("will bounce", sender=BOB, to=ERIN))
    wait_until(lambda: any(b"nobody@other.test" in raw and b"delivery-status" in raw.lower()
                           for raw in fetch(server, BOB)), timeout=60, what="the DSN in bob's INBOX")
    assert "will bounce" in subjects(server, ERIN)  # --keep
    server.ctl("forward", "off", ERIN)


def test_redirect_loop_between_two_users_stops(server: Daemon) -> None:
    server.ctl("forward", "set", BOB, CAROL)
    server.ctl("forward", "set", CAROL, BOB)
    try:
        before_bob, before_carol = len(fetch(server, BOB)), len(fetch(server, CAROL))
        assert send(server, [BOB], message("loop")) == {}
        # bob -> carol -> (bob: a loop) kept by carol; nothing queued.
        assert len(fetch(server, CAROL)) == before_carol + 1
        assert len(fetch(server, BOB)) == before_bob
    finally:
        server.ctl("forward", "off", BOB)
        server.ctl("forward", "off", CAROL)


def test_domain_scripts_run_before_and_after_and_on_submission(server: Daemon, tmp_path: Any) -> None:
    # A tracking copy of everything leaving (location MS) and a rejection
    # of one kind of mail for the whole domain, inbound.
    put_script(server, tmp_path, "track", '''
require ["environment", "copy", "reject"];
if environment :is "location" "MS" { redirect :copy "dave@example.com"; }
if allof (environment :is "location" "MS", header :contains "subject" "secret") { discard; }
if header :contains "subject" "forbidden" { reject "Not accepted here"; }
''', "--domain", "example.com", "--before")
    try:
        submit(server, BOB, [OUTSIDE], message("outbound note", sender=BOB, to=OUTSIDE))
        wait_until(lambda: "outbound note" in subjects(server, DAVE), timeout=30, what="the tracking copy")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            send(server, [CAROL], message("forbidden stuff", to=CAROL))
        assert refused.value.smtp_code == 550 and b"Not accepted here" in refused.value.smtp_error
        # A domain discard on submission: accepted, nothing sent (the mail
        # log says so; the tracking copy still goes, redirect :copy came first).
        assert submit(server, BOB, [OUTSIDE], message("secret plan", sender=BOB, to=OUTSIDE)) == {}
        log = server.ctl("log", "mail").stdout
        assert "all (sieve discard)" in log
        wait_until(lambda: "secret plan" in subjects(server, DAVE), timeout=30, what="the tracking copy")
    finally:
        server.ctl("sieve", "remove", "--domain", "example.com", "--before", "track")


def test_spamtest_sees_the_protection_verdict_with_swaks(server: Daemon, tmp_path: Any) -> None:
    # Without rspamd configured nothing is scored: spamtest is 0 ("not
    # tested", RFC 5235 §3.2), so a rule on it must not fire.
    put_script(server, tmp_path, "spam", '''
require ["spamtest", "relational", "comparator-i;ascii-numeric", "fileinto"];
if spamtest :value "eq" :comparator "i;ascii-numeric" "0" { fileinto "Untested"; }
''', "--user", DAVE)
    server.ctl("sieve", "activate", "--user", DAVE, "spam")
    with IMAPClient("127.0.0.1", port=server.ports["imap"], ssl=False) as imap:
        imap.login(DAVE, PASSWORD)
        imap.create_folder("Untested")
    subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(server.ports["smtp"]), "--from",
                    "alice@sender.test", "--to", DAVE, "--header", "Subject: swaks"], check=True,
                   capture_output=True, timeout=60)
    assert subjects(server, DAVE, "Untested") == ["swaks"]
    server.ctl("sieve", "remove", "--user", DAVE, "spam")


def test_one_of_two_recipients_rejecting_sends_the_sender_a_notice(server: Daemon, tmp_path: Any) -> None:
    # RFC 5429 §2.1: refused in SMTP only when every recipient rejects;
    # otherwise the others get the message and the sender learns why.
    put_script(server, tmp_path, "no-ads", 'require "reject";\nif header :contains "subject" "ad" '
               '{ reject "No advertising, please"; }\n', "--user", ERIN)
    server.ctl("sieve", "activate", "--user", ERIN, "no-ads")
    try:
        submit(server, DAVE, [ERIN, CAROL], message("an ad", sender=DAVE, to=f"{ERIN}, {CAROL}"))
        assert "an ad" in subjects(server, CAROL)
        assert "an ad" not in subjects(server, ERIN)
        wait_until(lambda: any(b"No advertising, please" in raw for raw in fetch(server, DAVE)), timeout=30,
                   what="the rejection notice in dave's INBOX")
        with pytest.raises(smtplib.SMTPDataError) as refused:
            submit(server, DAVE, [ERIN], message("another ad", sender=DAVE, to=ERIN))
        assert refused.value.smtp_code == 550 and b"No advertising" in refused.value.smtp_error
    finally:
        server.ctl("sieve", "remove", "--user", ERIN, "no-ads")
