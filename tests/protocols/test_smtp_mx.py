# -*- test-case-name: tests.protocols.test_smtp_mx -*-
"""The MX listener against a real server with real clients (smtplib, swaks, raw sockets)."""

from __future__ import annotations

import base64
import json
import os
import smtplib
import subprocess
import time
from email.message import EmailMessage
from typing import Any

import pytest
from twisted.internet import defer

from tests.protocols.test_smtp_wire import Wire, folder_records, inbox
from tests.support.daemon import xmailctl_argv
from tests.support.wait import wait_until

MESSAGE = b"From: x@remote.org\r\nTo: alice@example.com\r\nSubject: hello\r\n\r\nbody line\r\n"


def test_delivery_with_trace_fields(server: Any) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
        assert s.ehlo()[0] == 250
        assert s.sendmail("x@remote.org", ["alice@example.com"], MESSAGE) == {}
    [stored] = inbox(server, "alice@example.com")
    # RFC 5321 §4.4: Return-Path first, then what the delivery pipeline
    # adds (Authentication-Results), our Received, then the message.
    assert stored.startswith(b"Return-Path: <x@remote.org>\r\nAuthentication-Results: mail.example.com; ")
    assert b"\r\nReceived: from " in stored.split(b"\r\n\r\n")[0]
    received = stored.split(b"\r\n\r\n")[0].decode()
    assert "by mail.example.com (xmail) with ESMTP id " in received
    assert "for <alice@example.com>;" in received
    assert stored.endswith(MESSAGE.split(b"\r\n", 1)[1]) or stored.endswith(b"body line\r\n")
    assert b"\n" not in stored.replace(b"\r\n", b"")  # CRLF only


def test_one_copy_per_local_recipient_and_aliases(server: Any) -> None:
    server.ctx.directory.add_alias_domain("example.org", "example.com")
    server.ctx.directory.add_alias("sales@example.com", "bob@example.com")
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
        refused = s.sendmail("x@remote.org", ["alice@example.com", "bob@example.com", "alice@example.org",
                                              "sales@example.com"], MESSAGE)
    assert refused == {}
    # alice and alice@alias-domain are one user: one copy; bob and his alias: one copy
    assert len(inbox(server, "alice@example.com")) == 1
    assert len(inbox(server, "bob@example.com")) == 1


def test_unknown_user_and_relay_refused(server: Any) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
        s.ehlo()
        s.mail("x@remote.org")
        code, text = s.rcpt("nobody@example.com")
        assert (code, text[:5]) == (550, b"5.1.1")
        code, text = s.rcpt("victim@elsewhere.net")
        assert (code, text[:5]) == (554, b"5.7.1")
        code, text = s.rcpt("victim@[192.0.2.1]")
        assert (code, text[:5]) == (554, b"5.7.1")
        assert s.rcpt("alice@example.com")[0] == 250
        assert s.data(MESSAGE)[0] == 250
    assert len(inbox(server, "alice@example.com")) == 1


def test_relay_refused_even_after_auth_attempt_on_mx(server: Any) -> None:
    w = Wire(server.port("smtp"))
    w.cmd("EHLO c")
    assert w.cmd("AUTH PLAIN " + base64.b64encode(b"\0alice@example.com\0correct horse battery").decode()
                 ).startswith("503 5.5.1")
    assert w.cmd("MAIL FROM:<alice@example.com>").startswith("250")
    assert w.cmd("RCPT TO:<victim@elsewhere.net>").startswith("554 5.7.1")
    w.close()


def test_pipelining_with_slow_recipient_checker(server: Any) -> None:
    """RFC 2920: replies in order although each RCPT check answers later."""
    from twisted.internet import reactor

    agent = server.service.listeners["smtp"].factory.agent
    directory = server.ctx.directory
    calls: list[str] = []

    def slow_resolve(address: str) -> defer.Deferred:
        calls.append(address)
        d: defer.Deferred = defer.Deferred()
        reactor.callLater(0.2 if "alice" in address else 0.05, d.callback, directory.resolve(address))
        return d

    agent.recipient_resolver = slow_resolve
    w = Wire(server.port("smtp"))
    assert "PIPELINING" in w.cmd("EHLO client.example")
    started = time.monotonic()
    w.send(b"MAIL FROM:<x@remote.org>\r\nRCPT TO:<alice@example.com>\r\nRCPT TO:<ghost@example.com>\r\n"
           b"RCPT TO:<bob@example.com>\r\nDATA\r\n")
    replies = w.replies(5)
    assert [r[:9] for r in replies] == ["250 2.1.0", "250 2.1.5", "550 5.1.1", "250 2.1.5", "354 End d"]
    assert time.monotonic() - started >= 0.3  # the checks really were slow
    assert calls == ["alice@example.com", "ghost@example.com", "bob@example.com"]
    w.send(MESSAGE + b".\r\nMAIL FROM:<y@remote.org>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
    assert [r[:3] for r in w.replies(4)] == ["250", "250", "250", "354"]
    w.send(b"second\r\n.\r\nQUIT\r\n")
    assert [r[:3] for r in w.replies(2)] == ["250", "221"]
    assert len(inbox(server, "alice@example.com")) == 1
    assert len(inbox(server, "bob@example.com")) == 2


def test_bdat_chunks(server: Any) -> None:
    w = Wire(server.port("smtp"))
    assert "CHUNKING" in w.cmd("EHLO c")
    part1 = b"Subject: chunked\r\n\r\n"
    part2 = b".not stuffed\r\nend\r\n"
    w.send(b"MAIL FROM:<x@remote.org>\r\nRCPT TO:<bob@example.com>\r\n"
           + b"BDAT %d\r\n" % len(part1) + part1 + b"BDAT %d LAST\r\n" % len(part2) + part2)
    replies = w.replies(4)
    assert [r[:3] for r in replies] == ["250", "250", "250", "250"]
    assert "queued as" in replies[3]
    [stored] = inbox(server, "bob@example.com")
    assert stored.endswith(part1 + part2)
    w.close()


def test_smtputf8(server: Any) -> None:
    server.ctx.directory.add_domain("例子.广告")
    server.add_user("carol@例子.广告")
    msg = EmailMessage()
    msg["From"] = "用户@例子.广告"
    msg["To"] = "carol@例子.广告"
    msg["Subject"] = "你好"
    msg.set_content("正文")
    raw = msg.as_bytes(policy=msg.policy.clone(utf8=True))
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
        s.ehlo()
        assert s.has_extn("smtputf8")
        refused = s.sendmail("用户@例子.广告", ["carol@例子.广告"], raw, mail_options=["SMTPUTF8"])
    assert refused == {}
    [stored] = inbox(server, "carol@xn--fsqu00a.xn--4rr70v")
    assert "Return-Path: <用户@例子.广告>".encode() in stored
    assert "Subject: 你好".encode() in stored
    assert "with UTF8SMTP id" in stored.decode()


def test_utf8_address_without_smtputf8_refused(server: Any) -> None:
    w = Wire(server.port("smtp"))
    w.cmd("EHLO c")
    assert w.cmd("MAIL FROM:<用户@例子.广告>").startswith("553 5.6.7")
    w.close()


def test_30_mb_attachment_accepted(server: Any) -> None:
    msg = EmailMessage()
    msg["From"] = "x@remote.org"
    msg["To"] = "alice@example.com"
    msg["Subject"] = "big"
    msg.set_content("see attachment")
    payload = os.urandom(30_000_000)
    msg.add_attachment(payload, maintype="application", subtype="octet-stream", filename="big.bin")
    raw = msg.as_bytes()
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=120) as s:
        s.ehlo()
        assert s.sendmail("x@remote.org", ["alice@example.com"], raw) == {}  # smtplib sends SIZE=
    [record] = folder_records(server, "alice@example.com", "INBOX")
    assert record.size > 40_000_000
    # the spool file was removed after delivery
    tmp_dir = os.path.join(server.settings.data_dir, "tmp")
    assert not os.path.isdir(tmp_dir) or os.listdir(tmp_dir) == []


def test_over_size_refused_early_and_late(make_server: Any) -> None:
    srv = make_server("[limits]\nmax_message_size = 100000\n")
    srv.add_domain("example.com")
    srv.add_user("alice@example.com")
    w = Wire(srv.port("smtp"))
    assert "SIZE 100000" in w.cmd("EHLO c")
    assert w.cmd("MAIL FROM:<x@remote.org> SIZE=100001").startswith("552 5.3.4")
    assert w.cmd("MAIL FROM:<x@remote.org> SIZE=1000").startswith("250")
    assert w.cmd("RCPT TO:<alice@example.com>").startswith("250")
    assert w.cmd("DATA").startswith("354")
    # the client lied about SIZE: refused once the limit is passed, at the end
    w.send((b"x" * 998 + b"\r\n") * 150 + b".\r\n")
    assert w.reply().startswith("552 5.3.4")
    assert w.cmd("NOOP").startswith("250")  # the session is still usable
    w.send(b"MAIL FROM:<x@remote.org>\r\nRCPT TO:<alice@example.com>\r\nBDAT 200000 LAST\r\n")
    w.send(b"y" * 200000)
    assert [r[:9] for r in w.replies(3)] == ["250 2.1.0", "250 2.1.5", "552 5.3.4"]
    w.close()
    assert inbox(srv, "alice@example.com") == []


def test_over_quota(make_server: Any) -> None:
    srv = make_server()
    srv.add_domain("example.com")
    srv.add_user("small@example.com", quota_bytes=3000)
    filler = (b"x" * 70 + b"\r\n") * 20
    with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as s:
        assert s.sendmail("x@remote.org", ["small@example.com"], MESSAGE + filler) == {}
        # refused at RCPT when the declared SIZE cannot fit
        s.mail("x@remote.org", ["SIZE=1500"])
        code, text = s.rcpt("small@example.com")
        assert (code, text[:5]) == (452, b"4.2.2")
        s.rset()
        # refused after DATA when the store finds the mailbox full
        s.mail("x@remote.org")
        assert s.rcpt("small@example.com")[0] == 250
        code, text = s.data(MESSAGE + filler)
        assert (code, text[:5]) in ((452, b"4.2.2"), (552, b"5.2.2"))
    assert len(inbox(srv, "small@example.com")) == 1


def test_recipient_failing_after_data_goes_to_the_queue(make_server: Any) -> None:
    """One local recipient accepts, the other's mailbox is full only once the
    body is known: the 250 covers both, so the second copy must not be lost
    — the queue keeps it for retries (then a bounce), and delivers it once
    there is room."""
    srv = make_server()
    srv.add_domain("example.com")
    srv.add_user("alice@example.com")
    srv.add_user("small@example.com", quota_bytes=6000)
    filler = (b"x" * 70 + b"\r\n") * 60  # ~4.3 kB: fits once, not twice
    token = b"X-Token: after-data-%d\r\n" % os.getpid()
    with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as s:
        assert s.sendmail("x@remote.org", ["small@example.com"], MESSAGE + filler) == {}
        s.ehlo()
        s.mail("x@remote.org")
        assert s.rcpt("alice@example.com")[0] == 250
        assert s.rcpt("small@example.com")[0] == 250  # no SIZE: fits so far
        code, _text = s.data(token + MESSAGE + filler)
        assert code == 250
    assert any(token in m for m in inbox(srv, "alice@example.com"))
    assert not any(token in m for m in inbox(srv, "small@example.com"))
    queued = srv.call(lambda: srv.ctx.queue.stats())
    assert queued[0] == 1
    # Room appears: the queue's next attempt delivers the kept copy.
    srv.ctx.directory.set_quota("small@example.com", quota_bytes=0)
    subprocess.run([*xmailctl_argv(), "--data", srv.settings.data_dir, "queue", "retry", "--all"],
                   check=True, capture_output=True, timeout=60)
    wait_until(lambda: len(inbox(srv, "small@example.com")) >= 2, timeout=30, what="the kept copy delivered")
    [copy] = [m for m in inbox(srv, "small@example.com") if token in m]
    assert copy.count(b"Return-Path:") == 1


def test_no_250_when_a_failed_copy_cannot_be_queued_either(make_server: Any) -> None:
    """RFC 5321 §6.1: if a copy can be neither stored nor queued, the whole
    message is refused with 451 (the client retries; a duplicate for the
    others is better than a loss).  The queue's failure is injected."""
    srv = make_server()
    srv.add_domain("example.com")
    srv.add_user("alice@example.com")
    srv.add_user("small@example.com", quota_bytes=6000)
    filler = (b"x" * 70 + b"\r\n") * 60
    with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as s:
        assert s.sendmail("x@remote.org", ["small@example.com"], MESSAGE + filler) == {}

    def refuse(*args: Any, **kwargs: Any) -> Any:
        return defer.fail(OSError("spool disk full"))

    srv.ctx.queue.enqueue = refuse
    with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as s:
        s.ehlo()
        s.mail("x@remote.org")
        s.rcpt("alice@example.com")
        s.rcpt("small@example.com")
        code, text = s.data(MESSAGE + filler)
    assert (code, text[:5]) == (451, b"4.3.0")


def test_a_message_of_exactly_the_advertised_size_is_accepted(make_server: Any) -> None:
    # RFC 1870: SIZE is the largest message accepted, trace fields added by us not counted.
    srv = make_server("[limits]\nmax_message_size = 10000\n")
    srv.add_domain("example.com")
    srv.add_user("alice@example.com")
    pad = 10000 - len(MESSAGE)
    body = MESSAGE + (b"x" * 98 + b"\r\n") * (pad // 100) + b"x" * (pad % 100 - 2) + b"\r\n"
    assert len(body) == 10000
    with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as s:
        assert s.ehlo()[1].count(b"SIZE 10000") == 1
        assert s.sendmail("x@remote.org", ["alice@example.com"], body) == {}  # smtplib sends SIZE=10000
        with pytest.raises(smtplib.SMTPSenderRefused):
            s.sendmail("x@remote.org", ["alice@example.com"], body + b"y")


def test_swaks_with_starttls(server: Any) -> None:
    result = subprocess.run(
        ["swaks", "--server", "127.0.0.1", "--port", str(server.port("smtp")), "--from", "x@remote.org",
         "--to", "bob@example.com", "--tls", "--header", "Subject: via swaks", "--body", "hi", "--pipeline"],
        capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "TLS started" in result.stdout
    [stored] = inbox(server, "bob@example.com")
    assert b"Subject: via swaks" in stored
    assert b"with ESMTPS id" in stored


def test_idle_timeout(make_server: Any) -> None:
    srv = make_server("[limits]\nsmtp_idle_timeout = 1\n")
    w = Wire(srv.port("smtp"))
    w.cmd("EHLO c")
    started = time.monotonic()
    assert w.reply().startswith("421 4.4.2")  # blocks until the server's idle timer says so
    assert 0.8 < time.monotonic() - started < 5  # smtp_idle_timeout = 1, counted from the last command
    assert w.closed_by_server()


def test_error_limit(server: Any) -> None:
    w = Wire(server.port("smtp"))
    w.send(b"WHAT\r\n" * 25)
    replies = w.replies(21)
    assert all(r.startswith("500 5.5.2") for r in replies[:20])
    assert replies[20].startswith("421 4.7.0")
    assert w.closed_by_server()


def test_audit_log_records_delivery(server: Any) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
        s.sendmail("x@remote.org", ["alice@example.com"], MESSAGE)
    path = os.path.join(server.settings.data_dir, "log", "mail.log")
    events = [json.loads(line) for line in open(path, encoding="utf-8")]
    received = [e for e in events if e["event"] == "received"]
    assert received and received[-1]["recipients"] == "alice@example.com"
    assert received[-1]["sender"] == "x@remote.org"


@pytest.mark.parametrize("command", ["VRFY alice", "EXPN staff", "HELP", "NOOP"])
def test_misc_commands(server: Any, command: str) -> None:
    w = Wire(server.port("smtp"))
    reply = w.cmd(command)
    assert reply[:3] in ("252", "502", "214", "250")
    assert "alice@example.com" not in reply
    w.close()


def test_random_garbage_gets_well_formed_replies(server: Any) -> None:
    """Whatever arrives, every reply line is `ddd[ -]text` and the server
    logs no fault; then a normal transaction still works."""
    import random
    import re

    from twisted.logger import globalLogPublisher

    faults: list[dict] = []

    def observer(event: dict) -> None:
        if event.get("log_failure") is not None:
            faults.append(event)

    rng = random.Random(3)
    verbs = [b"EHLO", b"HELO", b"MAIL FROM:", b"RCPT TO:", b"DATA", b"BDAT", b"AUTH", b"RSET", b"\xff"]
    globalLogPublisher.addObserver(observer)
    try:
        for _ in range(30):
            w = Wire(server.port("smtp"))
            w.cmd(b"EHLO " + bytes(rng.randrange(33, 256) for _ in range(rng.randrange(1, 20))))
            lines = [rng.choice(verbs) + bytes(rng.randrange(0, 256) for _ in range(rng.randrange(0, 40)))
                     for _ in range(10)]
            w.send(b"\r\n".join(line.replace(b"\n", b"") for line in lines) + b"\r\nQUIT\r\n")
            w.sock.settimeout(2)
            data = w.buf
            try:
                while chunk := w.sock.recv(65536):
                    data += chunk
            except TimeoutError:
                pass
            w.close()
            for line in data.split(b"\r\n")[:-1]:
                assert re.fullmatch(rb"[2-5][0-9]{2}[ -][^\r\n]*", line), line
    finally:
        globalLogPublisher.removeObserver(observer)
    assert faults == []
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
        assert s.sendmail("x@remote.org", ["alice@example.com"], MESSAGE) == {}


def test_binary_helo_is_sanitised_in_received(server: Any) -> None:
    w = Wire(server.port("smtp"))
    assert w.cmd(b"EHLO bad\xff(name);x").startswith("250")
    w.send(b"MAIL FROM:<x@remote.org>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
    assert [r[:3] for r in w.replies(3)] == ["250", "250", "354"]
    assert w.cmd(MESSAGE + b".").startswith("250")
    w.close()
    [stored] = inbox(server, "alice@example.com")
    assert b"Received: from bad??name??x ([127.0.0.1])" in stored


def test_bare_postmaster_reaches_the_domain_postmaster(server: Any) -> None:
    server.ctx.directory.add_alias("postmaster@example.com", "bob@example.com")
    w = Wire(server.port("smtp"))
    w.cmd("EHLO c")
    w.send(b"MAIL FROM:<>\r\nRCPT TO:<Postmaster>\r\nDATA\r\n")
    assert [r[:3] for r in w.replies(3)] == ["250", "250", "354"]
    assert w.cmd(MESSAGE + b".").startswith("250")
    w.close()
    assert len(inbox(server, "bob@example.com")) == 1


def test_postmaster_of_every_hosted_domain_reaches_the_configured_account(make_server: Any) -> None:
    """Issue 16 #12, RFC 5321 §4.5.1: postmaster@ every hosted domain (any
    case, alias domains too) and <postmaster> alone (§4.1.1.3) are
    accepted and land in [server] postmaster's INBOX."""
    srv = make_server('[server]\npostmaster = "admin@example.com"\n')
    for domain in ("example.com", "example.org"):
        srv.add_domain(domain)
    srv.ctx.directory.add_alias_domain("example.cn", "example.com")
    srv.add_user("admin@example.com")
    recipients = ["postmaster@example.org", "PostMaster@Example.COM", "postmaster@example.cn", "postmaster"]
    with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as s:
        s.ehlo()
        s.mail("sender@remote.test")
        for rcpt in recipients:
            assert s.rcpt(rcpt)[0] == 250, rcpt
        assert s.rcpt("nobody@example.org")[0] == 550
        assert s.data(b"Subject: abuse report\r\n\r\nsee attached\r\n")[0] == 250
    [stored] = inbox(srv, "admin@example.com")  # one copy for the one account
    assert b"Subject: abuse report" in stored


def test_a_postmaster_user_of_its_own_domain_wins(make_server: Any) -> None:
    srv = make_server('[server]\npostmaster = "admin@example.com"\n')
    for domain in ("example.com", "example.org"):
        srv.add_domain(domain)
    srv.add_user("admin@example.com")
    srv.add_user("postmaster@example.org")
    with smtplib.SMTP("127.0.0.1", srv.port("smtp")) as s:
        assert s.sendmail("sender@remote.test", ["postmaster@example.org"], b"Subject: x\r\n\r\ny\r\n") == {}
    assert len(inbox(srv, "postmaster@example.org")) == 1 and inbox(srv, "admin@example.com") == []
