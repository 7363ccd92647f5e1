# -*- test-case-name: tests.protocols.test_smtp_submission -*-
"""Submission (587 STARTTLS, 465 implicit TLS) and send-save against a real server."""

from __future__ import annotations

import base64
import imaplib
import smtplib
import subprocess
from typing import Any

import pytest

from tests.conftest import PASSWORD, wait_until
from tests.protocols.test_smtp_wire import Wire, client_tls, folder_records, inbox

ALICE = "alice@example.com"


def message(sender: str = ALICE, to: str = "bob@example.com", extra: str = "", ident: bool = True) -> bytes:
    headers = f"From: Alice <{sender}>\r\nTo: {to}\r\nSubject: test\r\n"
    if ident:
        headers += "Message-ID: <m1@example.com>\r\nDate: Fri, 27 Nov 2026 10:00:00 +0000\r\n"
    return (headers + extra + "\r\nhello\r\n").encode()


def login(s: smtplib.SMTP, user: str = ALICE, password: str = PASSWORD) -> None:
    s.login(user, password)


def test_auth_before_tls_refused_then_allowed_after_starttls(server: Any) -> None:
    port = server.port("submission")
    with smtplib.SMTP("127.0.0.1", port, source_address=("127.0.0.2", 0)) as s:
        s.ehlo()
        assert not s.has_extn("auth")
        assert s.has_extn("starttls")
        code, text = s.docmd("AUTH", "PLAIN " + base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode())
        assert (code, text[:6]) == (538, b"5.7.11")
        code, text = s.docmd("MAIL", f"FROM:<{ALICE}>")
        assert (code, text[:5]) == (530, b"5.7.0")
        s.starttls(context=client_tls())
        s.ehlo()
        assert "PLAIN" in s.esmtp_features["auth"] and "LOGIN" in s.esmtp_features["auth"]
        login(s)
        assert s.sendmail(ALICE, ["bob@example.com"], message()) == {}
    [stored] = inbox(server, "bob@example.com")
    assert b"with ESMTPSA id" in stored and stored.startswith(b"Return-Path: <alice@example.com>\r\n")


def test_auth_then_starttls_gives_the_session_slot_back(make_server: Any) -> None:
    """Issue 14: AUTH before STARTTLS, then STARTTLS (RFC 3207 §4.2 resets
    the session) kept the user's per-user slot until the server restarted;
    after max_connections_per_user such sessions the user was locked out."""
    srv = make_server("[limits]\nmax_connections_per_user = 2\n")
    srv.add_domain("example.com")
    srv.add_user(ALICE)
    port = srv.port("submission")
    slots = srv.ctx.connections
    for _ in range(4):
        with smtplib.SMTP("127.0.0.1", port) as s:  # loopback: AUTH before TLS
            s.ehlo()
            login(s)
            assert slots.count(ALICE, "submission") == 1
            s.starttls(context=client_tls())
            assert slots.count(ALICE, "submission") == 0  # released with the 220
            s.ehlo()
            code, _text = s.docmd("MAIL", f"FROM:<{ALICE}>")
            assert code == 530  # the login did not survive STARTTLS
    with smtplib.SMTP("127.0.0.1", port) as s:
        s.starttls(context=client_tls())
        s.ehlo()
        login(s)
        assert s.sendmail(ALICE, ["alice@example.com"], message(to=ALICE)) == {}
    wait_until(lambda: slots.count(ALICE, "submission") == 0, what="the last slot released")


def test_loopback_plaintext_auth_can_be_switched_off(make_server: Any) -> None:
    srv = make_server("[server]\nloopback_plaintext_auth = false\n")
    with smtplib.SMTP("127.0.0.1", srv.port("submission")) as s:
        s.ehlo()
        assert not s.has_extn("auth")


def test_implicit_tls_auth_login(server: Any) -> None:
    with smtplib.SMTP_SSL("127.0.0.1", server.port("submissions"), context=client_tls(),
                          source_address=("127.0.0.2", 0)) as s:
        s.ehlo()
        assert not s.has_extn("starttls")
        s.user, s.password = ALICE, PASSWORD
        code, _ = s.auth("LOGIN", s.auth_login, initial_response_ok=False)
        assert code == 235
        assert s.sendmail(ALICE, ["bob@example.com"], message()) == {}
    assert len(inbox(server, "bob@example.com")) == 1


def test_wrong_password_and_audit(server: Any) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as s:
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            s.login(ALICE, "wrong")
        assert info.value.smtp_code == 535 and info.value.smtp_error.startswith(b"5.7.8")
        code, _ = s.docmd("MAIL", f"FROM:<{ALICE}>")
        assert code == 530
    log = open(f"{server.settings.data_dir}/log/login.log", encoding="utf-8").read()
    assert '"result":"fail"' in log and '"protocol":"submission"' in log


def test_disabled_account_refused_like_a_wrong_password(server: Any) -> None:
    server.ctx.directory.set_enabled("bob@example.com", False)
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as s:
        s.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as info:
            s.login("bob@example.com", PASSWORD)
        assert info.value.smtp_code == 535 and info.value.smtp_error.startswith(b"5.7.8")
    log = open(f"{server.settings.data_dir}/log/login.log", encoding="utf-8").read()
    assert '"result":"disabled"' in log


def test_spoofed_envelope_and_header_sender_refused(server: Any) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as s:
        s.ehlo()
        login(s)
        code, text = s.mail("bob@example.com")
        assert (code, text[:5]) == (553, b"5.7.1")
        s.rset()
        assert s.mail(ALICE)[0] == 250
        assert s.rcpt("bob@example.com")[0] == 250
        code, text = s.data(message(sender="bob@example.com"))
        assert (code, text[:5]) == (553, b"5.7.1")
    assert inbox(server, "bob@example.com") == []


def test_alias_and_alias_domain_senders_allowed(server: Any) -> None:
    server.ctx.directory.add_alias_domain("example.org", "example.com")
    server.ctx.directory.add_alias("boss@example.com", ALICE)
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as s:
        s.ehlo()
        login(s)
        assert s.sendmail("alice@example.org", ["bob@example.com"], message(sender="alice@example.org")) == {}
        assert s.sendmail("boss@example.com", ["bob@example.com"], message(sender="boss@example.org")) == {}
    assert len(inbox(server, "bob@example.com")) == 2


def test_outlook_space_after_colon_and_headers_added(server: Any) -> None:
    w = Wire(server.port("submission"))
    w.cmd("EHLO outlook")
    plain = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    assert w.cmd("AUTH PLAIN " + plain).startswith("235")
    assert w.cmd(f"MAIL FROM: <{ALICE}>").startswith("250")
    assert w.cmd("RCPT TO: <bob@example.com>").startswith("250")
    assert w.cmd("DATA").startswith("354")
    assert w.cmd(message(ident=False) + b".").startswith("250")
    w.close()
    [stored] = inbox(server, "bob@example.com")
    head = stored.split(b"\r\n\r\n")[0]
    assert b"\r\nMessage-ID: <" in head and b"@mail.example.com>" in head
    assert b"\r\nDate: " in head


def test_send_save_with_bcc_and_dedup_of_client_append(server: Any) -> None:
    server.add_user("carol@example.com")
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as s:
        s.ehlo()
        login(s)
        s.sendmail(ALICE, ["bob@example.com", "carol@example.com"], message(to="bob@example.com"))
    [sent] = inbox(server, ALICE, "Sent")
    [record] = folder_records(server, ALICE, "Sent")
    assert "\\Seen" in record.flags
    assert b"Bcc: carol@example.com\r\n" in sent
    assert b"Message-ID: <m1@example.com>" in sent
    # The client saves its own copy over IMAP: no duplicate appears.
    copy = message(to="bob@example.com")
    if "imap" in server.service.listeners:
        imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
        imap.login(ALICE, PASSWORD)
        status, _ = imap.append("Sent", "(\\Seen)", None, copy)
        assert status == "OK"
        imap.logout()
    else:
        mailbox = server.mailbox(ALICE)
        result = server.call(lambda: mailbox.folder("Sent").append(copy, ("\\Seen",)))
        assert result.deduplicated and result.uid == record.uid
    assert len(inbox(server, ALICE, "Sent")) == 1


def test_send_save_switched_off(server: Any) -> None:
    server.ctx.directory.set_setting(ALICE, "send_save", "off")
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as s:
        s.ehlo()
        login(s)
        assert s.sendmail(ALICE, ["bob@example.com"], message()) == {}
    assert inbox(server, ALICE, "Sent") == []
    assert len(inbox(server, "bob@example.com")) == 1


def test_daily_send_limit(make_server: Any) -> None:
    srv = make_server("[limits]\ndaily_send_limit = 2\n")
    srv.add_domain("example.com")
    srv.add_user(ALICE)
    srv.add_user("bob@example.com")
    with smtplib.SMTP("127.0.0.1", srv.port("submission")) as s:
        s.ehlo()
        login(s)
        for _ in range(2):
            assert s.sendmail(ALICE, ["bob@example.com"], message()) == {}
        code, text = s.mail(ALICE)
        assert code == 450 and text.startswith(b"4.7.1") and b"limit of 2" in text
    # the other listener shares the counter
    with smtplib.SMTP_SSL("127.0.0.1", srv.port("submissions"), context=client_tls()) as s:
        s.ehlo()
        login(s)
        assert s.mail(ALICE)[0] == 450


def test_unauthenticated_submission_refused(server: Any) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as s:
        s.ehlo()
        code, text = s.mail("x@remote.org")
        assert (code, text[:5]) == (530, b"5.7.0")
        code, text = s.rcpt("bob@example.com")
        assert code == 530


def test_remote_recipient_goes_to_queue(make_server: Any) -> None:
    remote = make_server()
    remote.add_domain("remote.test")
    remote.add_user("dave@remote.test")
    srv = make_server(f'[transport]\n"remote.test" = "127.0.0.1:{remote.port("smtp")}"\n')
    srv.add_domain("example.com")
    srv.add_user(ALICE)
    srv.add_user("bob@example.com")
    with smtplib.SMTP("127.0.0.1", srv.port("submission")) as s:
        s.ehlo()
        login(s)
        code, text = s.mail(ALICE, ["RET=HDRS", "ENVID=e1"])
        assert code == 250
        code, text = s.rcpt("dave@remote.test", ["NOTIFY=FAILURE"])
        if srv.ctx.queue is None:
            assert (code, text[:5]) == (451, b"4.3.0")
            return
        assert code == 250
        assert s.rcpt("bob@example.com")[0] == 250
        assert s.data(message(to="dave@remote.test"))[0] == 250
    assert len(inbox(srv, "bob@example.com")) == 1
    import time

    for _ in range(100):
        if inbox(remote, "dave@remote.test"):
            break
        time.sleep(0.1)
    [delivered] = inbox(remote, "dave@remote.test")
    assert b"Subject: test" in delivered


def test_swaks_submission(server: Any) -> None:
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(server.port("submission")), "--from", ALICE,
         "--to", "bob@example.com", "--tls", "--auth", "LOGIN", "--auth-user", ALICE, "--auth-password",
         PASSWORD, "--header", f"From: {ALICE}"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(inbox(server, "bob@example.com")) == 1
    assert len(inbox(server, ALICE, "Sent")) == 1


def test_large_submission_goes_through_files(server: Any) -> None:
    """A message above the in-memory spool limit: the local copy (with
    Return-Path) and the Sent copy (with Bcc) are made from the tmp file."""
    import os

    server.add_user("carol@example.com")
    body = ("x" * 76 + "\r\n") * 40000  # ~3 MB
    raw = message(extra="") + body.encode()
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as s:
        s.ehlo()
        login(s)
        assert s.sendmail(ALICE, ["bob@example.com", "carol@example.com"], raw) == {}
    [delivered] = inbox(server, "bob@example.com")
    assert delivered.startswith(b"Return-Path: <alice@example.com>\r\nReceived: ")
    assert delivered.endswith(raw)
    [sent] = inbox(server, ALICE, "Sent")
    assert sent.startswith(b"Bcc: carol@example.com\r\nReceived: ") and sent.endswith(raw)
    tmp_dir = os.path.join(server.settings.data_dir, "tmp")
    assert os.listdir(tmp_dir) == []  # spool and copies removed
