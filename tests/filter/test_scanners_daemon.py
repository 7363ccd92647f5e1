"""clamd and rspamd behind a real `twistd -n xmail`: what MX and submission
clients see (swaks, smtplib), what lands where (imapclient), and learning
from Junk moves (rspamd's controller counts it)."""

from __future__ import annotations

import os
import smtplib
import subprocess
import time
from collections.abc import Iterator
from typing import Any

import pytest
from imapclient import IMAPClient

from tests.filter.daemon_support import BOB, CAROL, PASSWORD, start_daemon
from tests.filter.scanners.support import closed_port, eicar_message, message
from tests.support.daemon import Daemon
from tests.support.scanners import Clamd, Rspamd
from tests.support.wait import wait_until


def start(tmp_path: Any, filter_settings: str) -> Daemon:
    return start_daemon(tmp_path, f"[filter]\n{filter_settings}\nauthenticate = false\n")


@pytest.fixture
def daemon(tmp_path: Any, clamd: Clamd, rspamd: Rspamd) -> Iterator[Daemon]:
    daemon = start(tmp_path, f'clamd = "{clamd.tcp}"\nrspamd = "{rspamd.url}"\n'
                             f'rspamd_controller = "{rspamd.controller}"\n'
                             f'rspamd_password = "{rspamd.password}"\n')
    yield daemon
    daemon.stop()


def imap(daemon: Daemon, user: str = BOB) -> IMAPClient:
    client = IMAPClient("127.0.0.1", port=daemon.ports["imap"], ssl=False, timeout=30)
    client.login(user, PASSWORD)
    return client


def folder_messages(daemon: Daemon, folder: str, user: str = BOB) -> list[bytes]:
    with imap(daemon, user) as client:
        client.select_folder(folder, readonly=True)
        uids = client.search()
        return [data[b"BODY[]"] for _uid, data in sorted(client.fetch(uids, ["BODY.PEEK[]"]).items())]


def swaks(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["swaks", "--server", "127.0.0.1", "--port", str(daemon.ports["smtp"]),
                           "--from", "alice@example.net", "--to", BOB, *args],
                          capture_output=True, text=True, timeout=60)


def test_a_virus_is_refused_at_the_end_of_data_and_never_stored(daemon: Daemon, tmp_path: Any) -> None:
    path = os.path.join(tmp_path, "virus.eml")
    with open(path, "wb") as f:
        f.write(eicar_message())
    result = swaks(daemon, "--data", path)
    assert "<** 554 5.7.1 Message contains a virus (Xmail.Test.EICAR" in result.stdout, result.stdout
    # Submission too: a hosted user's infected attachment does not go out.
    with smtplib.SMTP("127.0.0.1", daemon.ports["submission"], timeout=30) as smtp:
        smtp.login(BOB, PASSWORD)
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail(BOB, [CAROL], eicar_message().replace(b"alice@example.net", BOB.encode()))
        assert refused.value.smtp_code == 554
    assert folder_messages(daemon, "INBOX") == [] and folder_messages(daemon, "INBOX", CAROL) == []
    assert "Xmail.Test.EICAR" in daemon.ctl("log", "mail").stdout


def test_spam_goes_to_junk_with_its_score_and_worse_is_refused(daemon: Daemon) -> None:
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        assert smtp.sendmail("alice@example.net", [BOB], message("Offer XMAIL-SCORE=7.5")) == {}
        assert smtp.sendmail("alice@example.net", [BOB], message("Lunch on Thursday")) == {}
        with pytest.raises(smtplib.SMTPDataError) as refused:
            smtp.sendmail("alice@example.net", [BOB], message("XMAIL-TEST-SPAM now"))
        assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (550, b"5.7.1")
    (junk,) = folder_messages(daemon, "Junk")
    assert b"X-Spam-Score: 7.5\r\n" in junk and b"X-Spam-Status: Yes, score=7.5 required=6.0" in junk
    (ham,) = folder_messages(daemon, "INBOX")
    assert b"X-Spam-Status: No" in ham
    # The domain lowers its threshold: 7.5 is now refused for its users.
    daemon.ctl("domain", "set", "example.com", "reject_score=7")
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        with pytest.raises(smtplib.SMTPDataError):
            smtp.sendmail("alice@example.net", [BOB], message("Offer XMAIL-SCORE=7.5"))


def test_moving_into_and_out_of_junk_teaches_rspamd(daemon: Daemon, rspamd: Rspamd) -> None:
    words = " ".join(f"token{n}word" for n in range(40))
    with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
        smtp.sendmail("alice@example.net", [BOB], message("Unwanted newsletter", f"spam {words}\r\n"))
        smtp.sendmail("alice@example.net", [BOB], message("XMAIL-SCORE=7.5 but wanted", f"ham {words}\r\n"))
    before = rspamd.stat()["learned"]
    with imap(daemon) as client:
        client.select_folder("INBOX")
        (uid,) = client.search(["SUBJECT", "Unwanted"])
        client.move([uid], "Junk")  # reported as spam
        wait_until(lambda: rspamd.stat()["learned"] >= before + 1, 30, "rspamd to learn the spam")
        client.select_folder("Junk")
        (uid,) = client.search(["SUBJECT", "but wanted"])
        client.move([uid], "INBOX")  # reported as ham
        wait_until(lambda: rspamd.stat()["learned"] >= before + 2, 30, "rspamd to learn the ham")


def test_scanner_down_tempfails_within_the_timeout_or_accepts_unscanned(tmp_path: Any) -> None:
    port = closed_port()
    daemon = start(tmp_path / "tempfail", f'clamd = "tcp:127.0.0.1:{port}"\nscan_timeout = 2\n')
    try:
        with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
            started = time.monotonic()
            with pytest.raises(smtplib.SMTPDataError) as refused:
                smtp.sendmail("alice@example.net", [BOB], message("Lunch"))
            assert time.monotonic() - started < 2 + 1
            assert (refused.value.smtp_code, refused.value.smtp_error[:5]) == (451, b"4.7.1")
        assert folder_messages(daemon, "INBOX") == []
    finally:
        daemon.stop()
    daemon = start(tmp_path / "accept", f'clamd = "tcp:127.0.0.1:{port}"\non_scanner_failure = "accept"\n')
    try:
        with smtplib.SMTP("127.0.0.1", daemon.ports["smtp"], timeout=30) as smtp:
            assert smtp.sendmail("alice@example.net", [BOB], message("Lunch")) == {}
        (stored,) = folder_messages(daemon, "INBOX")
        assert b"X-Spam-Status: unscanned\r\n" in stored
    finally:
        daemon.stop()
