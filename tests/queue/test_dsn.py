# -*- test-case-name: tests.queue.test_dsn -*-
"""RFC 3464 reports, parsed back with the stdlib email package."""

from __future__ import annotations

import email
import email.policy

import pytest

from xmail.queue.dsn import MAX_FULL_RETURN, RecipientReport, allows, build_dsn

ORIGINAL = (b"From: Alice <alice@example.com>\r\nTo: bob@other.test\r\nSubject: lunch\r\n"
            b"Message-ID: <m1@example.com>\r\n\r\nSee you at noon.\r\n")


@pytest.fixture
def original(tmp_path):
    path = tmp_path / "orig.eml"
    path.write_bytes(ORIGINAL)
    return str(path)


def parse(raw: bytes):
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    return email.message_from_bytes(raw, policy=email.policy.compat32)


def failed(**kw) -> RecipientReport:
    base = dict(address="bob@other.test", action="failed", status="5.1.1",
                diagnostic="550 5.1.1 <bob@other.test>: no such user", remote_mta="mx.other.test",
                last_attempt=1_700_000_100.0)
    base.update(kw)
    return RecipientReport(**base)


def test_failure_report_structure(original):
    raw = build_dsn(reporting_mta="mail.example.com", sender="alice@example.com",
                    recipients=[failed(orcpt="rfc822;bob+x@other.test"), failed(address="carol@other.test")],
                    original_path=original, arrival=1_700_000_000.0, now=1_700_000_200.0,
                    envid="QQ314159")
    msg = parse(raw)
    assert msg.get_content_type() == "multipart/report"
    assert msg.get_param("report-type") == "delivery-status"
    assert msg["To"] == "<alice@example.com>"
    assert msg["Auto-Submitted"] == "auto-replied"
    assert "MAILER-DAEMON@mail.example.com" in msg["From"]
    text, status, returned = msg.get_payload()
    assert text.get_content_type() == "text/plain"
    assert "550 5.1.1" in text.get_payload(decode=True).decode()
    assert status.get_content_type() == "message/delivery-status"
    blocks = status.get_payload()
    assert len(blocks) == 3  # per-message + 2 recipients
    per_message = blocks[0]
    assert per_message["Reporting-MTA"] == "dns; mail.example.com"
    assert per_message["Original-Envelope-Id"] == "QQ314159"
    assert "Arrival-Date" in per_message
    bob = blocks[1]
    assert bob["Original-Recipient"] == "rfc822; bob+x@other.test"
    assert bob["Final-Recipient"] == "rfc822; bob@other.test"
    assert bob["Action"] == "failed"
    assert bob["Status"] == "5.1.1"
    assert bob["Remote-MTA"] == "dns; mx.other.test"
    assert bob["Diagnostic-Code"] == "smtp; 550 5.1.1 <bob@other.test>: no such user"
    assert blocks[2]["Final-Recipient"] == "rfc822; carol@other.test"
    # No RET given and a small message: the whole message comes back.
    assert returned.get_content_type() == "message/rfc822"
    inner = returned.get_payload()[0]
    assert inner["Subject"] == "lunch"
    assert "See you at noon." in inner.get_payload()


def test_ret_hdrs_returns_headers_only(original):
    raw = build_dsn(reporting_mta="mail.example.com", sender="alice@example.com", recipients=[failed()],
                    original_path=original, arrival=0.0, now=0.0, ret="HDRS")
    returned = parse(raw).get_payload()[2]
    assert returned.get_content_type() == "text/rfc822-headers"
    body = returned.get_payload()
    assert "Subject: lunch" in body and "noon" not in body


def test_big_message_without_ret_returns_headers(tmp_path):
    path = tmp_path / "big.eml"
    path.write_bytes(b"Subject: big\r\n\r\n" + (b"x" * 998 + b"\r\n") * (MAX_FULL_RETURN // 1000 + 10))
    raw = build_dsn(reporting_mta="m", sender="a@b", recipients=[failed()], original_path=str(path),
                    arrival=0.0, now=0.0)
    assert len(raw) < 10_000
    assert parse(raw).get_payload()[2].get_content_type() == "text/rfc822-headers"
    raw_full = build_dsn(reporting_mta="m", sender="a@b", recipients=[failed()], original_path=str(path),
                         arrival=0.0, now=0.0, ret="FULL")
    assert parse(raw_full).get_payload()[2].get_content_type() == "message/rfc822"


def test_delay_report(original):
    raw = build_dsn(reporting_mta="mail.example.com", sender="alice@example.com",
                    recipients=[failed(action="delayed", status="4.4.1", diagnostic="connect failed",
                                       will_retry_until=1_700_432_000.0)],
                    original_path=original, arrival=1_700_000_000.0, now=1_700_014_400.0, ret="FULL")
    msg = parse(raw)
    assert msg["Subject"].startswith("Delayed Mail")
    block = msg.get_payload()[1].get_payload()[1]
    assert block["Action"] == "delayed"
    assert block["Status"] == "4.4.1"
    assert "Will-Retry-Until" in block
    # RFC 3461 §4.3: a delay report carries the headers only, even with RET=FULL.
    assert msg.get_payload()[2].get_content_type() == "text/rfc822-headers"


def test_remote_text_cannot_inject_fields(original):
    raw = build_dsn(reporting_mta="m.example", sender="a@example.com",
                    recipients=[failed(diagnostic="550 bad\r\nAction: delivered")],
                    original_path=original, arrival=0.0, now=0.0)
    block = parse(raw).get_payload()[1].get_payload()[1]
    assert block["Action"] == "failed"
    assert block.get_all("Action") == ["failed"]


def test_notify_rules():
    assert allows((), "failed") and allows((), "delayed") and not allows((), "relayed")
    assert not allows(("NEVER",), "failed")
    assert allows(("SUCCESS",), "relayed") and not allows(("SUCCESS",), "failed")
    assert allows(("FAILURE",), "failed") and not allows(("FAILURE",), "delayed")



def test_own_diagnostics_are_not_labelled_smtp(original):
    raw = build_dsn(reporting_mta="m.example", sender="a@example.com",
                    recipients=[failed(diagnostic="connect to mx:25 failed: refused", status="4.4.1")],
                    original_path=original, arrival=0.0, now=0.0)
    block = parse(raw).get_payload()[1].get_payload()[1]
    assert block["Diagnostic-Code"] == "X-xmail; connect to mx:25 failed: refused"
