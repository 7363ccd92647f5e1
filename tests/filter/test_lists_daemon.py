"""Sender lists, the header checks and the burst rule against a real `twistd -n xmail`."""

from __future__ import annotations

import imaplib
import smtplib
from collections.abc import Iterator
from typing import Any

import pytest

from tests.filter.daemon_support import BOB, CAROL, PASSWORD, fetch, start_daemon
from tests.support.daemon import Daemon


@pytest.fixture
def daemon(tmp_path: Any) -> Iterator[Daemon]:
    daemon = start_daemon(tmp_path, "[filter]\nburst_per_minute = 2\n")
    yield daemon
    daemon.stop()


def test_a_blocked_envelope_sender_is_refused_at_rcpt_for_that_recipient_only(daemon: Daemon) -> None:
    daemon.ctl("spam", "block", "add", "--user", BOB, "*.evil.example")
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        smtp.ehlo("client.example")
        smtp.mail("news@mail.evil.example")
        code, text = smtp.rcpt(BOB)
        assert (code, text[:5]) == (550, b"5.7.1")
        assert smtp.rcpt(CAROL)[0] == 250
        assert smtp.data(b"From: news@mail.evil.example\r\nSubject: hi\r\n\r\nbody\r\n")[0] == 250
    assert len(fetch(daemon, CAROL)) == 1 and fetch(daemon, BOB) == []
    # Removing the entry takes effect at once, no restart.
    daemon.ctl("spam", "block", "remove", "--user", BOB, "*.evil.example")
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("news@mail.evil.example", [BOB], b"From: x@y.example\r\n\r\nagain\r\n")
    assert len(fetch(daemon, BOB)) == 1


def test_a_blocked_from_author_is_dropped_per_recipient_and_refused_when_all_block(daemon: Daemon) -> None:
    daemon.ctl("spam", "block", "add", "--domain", "example.com", "@evil.example")
    daemon.ctl("spam", "allow", "add", "--user", CAROL, "ceo@evil.example")
    message = b"From: CEO <ceo@evil.example>\r\nSubject: invoice\r\n\r\npay now\r\n"
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        # The envelope sender is innocent: the From header decides.
        assert smtp.sendmail("bounce@other.example", [BOB, CAROL], message) == {}
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("bounce@other.example", [BOB], message)
        assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (550, b"5.7.1")
    assert len(fetch(daemon, CAROL)) == 1 and fetch(daemon, BOB) == []
    mail_log = daemon.ctl("log", "mail").stdout
    assert "discarded" in mail_log and "sender blocked" in mail_log
    assert "refused" in mail_log


def test_two_from_fields_are_refused_and_forged_results_removed(daemon: Daemon) -> None:
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("a@other.example", [BOB],
                          b"From: a@other.example\r\nFrom: boss@example.com\r\n\r\nx\r\n")
        assert refused.value.smtp_code == 550
        smtp.sendmail("a@other.example", [BOB],
                      b"Authentication-Results: mail.example.com; dmarc=pass header.from=example.com\r\n"
                      b"Authentication-Results: elsewhere.example; spf=fail\r\n"
                      b"From: a@other.example\r\nSubject: forged\r\n\r\nx\r\n")
    (stored,) = fetch(daemon, BOB)
    assert b"mail.example.com; dmarc=pass" not in stored
    assert b"Authentication-Results: elsewhere.example; spf=fail" in stored


def test_the_burst_rule_refuses_the_third_message_in_a_minute(daemon: Daemon) -> None:
    with smtplib.SMTP("127.0.0.1", daemon.ports["submission"], timeout=30) as smtp:
        smtp.login(BOB, PASSWORD)
        message = f"From: {BOB}\r\nTo: {CAROL}\r\nSubject: burst\r\n\r\nx\r\n".encode()
        for _ in range(2):
            assert smtp.sendmail(BOB, [CAROL], message) == {}
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(BOB, [CAROL], message)
        assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (450, b"4.7.1")
    assert len(fetch(daemon, CAROL)) == 2
    admin_log = daemon.ctl("log", "admin").stdout
    assert "burst rule" in admin_log and BOB in admin_log


def test_the_spam_digest_lists_junk_in_the_inbox(daemon: Daemon) -> None:
    with imaplib.IMAP4("127.0.0.1", daemon.ports["imap"]) as imap:
        imap.login(BOB, PASSWORD)
        typ, _ = imap.append("Junk", None, None,
                             b"From: Pills <pills@spam.example>\r\nSubject: Cheap pills\r\n\r\nbuy\r\n")
        assert typ == "OK"
    assert "sent to 0 user(s)" in daemon.ctl("spam", "digest").stdout  # nobody asked for one
    daemon.ctl("user", "set", BOB, "spam_digest=daily")
    assert daemon.ctl("spam", "digest", "--user", BOB).stdout == f"spam digest sent to 1 user(s): {BOB}\n"
    (digest,) = fetch(daemon, BOB)
    assert b"pills@spam.example" in digest and b"Cheap pills" in digest
    # Sent: not due again today.
    assert "sent to 0 user(s)" in daemon.ctl("spam", "digest", "--user", BOB).stdout
