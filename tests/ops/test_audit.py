"""The audit log: JSON lines under data_dir/log, CR/LF escaped, plus
twisted.logger events."""

from __future__ import annotations

import dataclasses
import json

from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from xmail.auth.interfaces import IAuditLog
from xmail.config import Settings
from xmail.ops.audit import AuditLog


def _settings(tmp_path):
    settings = Settings()
    return dataclasses.replace(settings, server=dataclasses.replace(settings.server,
                                                                    data_dir=str(tmp_path)))


def _lines(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def test_login_and_mail_events_are_json_lines(tmp_path):
    audit = AuditLog(_settings(tmp_path), clock=lambda: 1700000000.25)
    assert verifyObject(IAuditLog, audit)
    audit.login("alice@example.com", "imap", "127.0.0.1", "PLAIN", "ok")
    audit.logout("alice@example.com", "imap", "127.0.0.1")
    audit.mail("received", account="alice@example.com", size=1234, folder="INBOX")
    audit.close()
    assert _lines(tmp_path / "log" / "login.log") == [
        {"ts": 1700000000.25, "event": "login", "account": "alice@example.com", "protocol": "imap",
         "ip": "127.0.0.1", "method": "PLAIN", "result": "ok"},
        {"ts": 1700000000.25, "event": "logout", "account": "alice@example.com", "protocol": "imap",
         "ip": "127.0.0.1"},
    ]
    assert _lines(tmp_path / "log" / "mail.log") == [
        {"ts": 1700000000.25, "event": "received", "account": "alice@example.com", "size": 1234,
         "folder": "INBOX"}]


def test_crlf_in_values_cannot_forge_a_line(tmp_path):
    events = []
    globalLogPublisher.addObserver(events.append)
    try:
        audit = AuditLog(_settings(tmp_path))
        forged = 'x@example.com\r\n{"event":"login","result":"ok"}'
        audit.login(forged, "pop3", "127.0.0.1", "USER", "fail")
        audit.mail("received", subject=b"a\nb\xff", other=object())
        audit.close()
    finally:
        globalLogPublisher.removeObserver(events.append)
    raw = (tmp_path / "log" / "login.log").read_text()
    assert raw.count("\n") == 1 and "\r" not in raw
    assert _lines(tmp_path / "log" / "login.log")[0]["account"] == forged
    mail = _lines(tmp_path / "log" / "mail.log")[0]
    assert mail["subject"] == "a\nb\\xff"
    ours = [e for e in events if e.get("log_namespace") == "xmail.audit"]
    assert len(ours) == 2
    assert "\r" not in ours[0]["account"] and "\n" not in ours[0]["account"]


def test_two_writers_append_whole_lines(tmp_path):
    settings = _settings(tmp_path)
    first, second = AuditLog(settings), AuditLog(settings)
    for i in range(200):
        (first if i % 2 else second).login(f"u{i}@example.com", "imap", "127.0.0.1", "PLAIN", "ok")
    first.close()
    second.close()
    accounts = sorted(line["account"] for line in _lines(tmp_path / "log" / "login.log"))
    assert accounts == sorted(f"u{i}@example.com" for i in range(200))


def test_crlf_in_admin_and_traffic_values_stays_escaped(tmp_path):
    audit = AuditLog(_settings(tmp_path), clock=lambda: 1700000000.0)
    forged = 'root\r\n{"ts":1,"event":"admin","operator":"mallory"}'
    audit.admin(forged, ["user", "add", "a@example.com\r\nx"], "ok")
    audit.mail("received", user="", sender="x@example.org\r\nBcc: y", recipients="a@example.com\nb",
               size=1)
    audit.close()
    for name in ("admin.log", "mail.log", "traffic.log"):
        raw = (tmp_path / "log" / name).read_text()
        assert "\r" not in raw
        assert all(line.startswith('{"ts":1700000000') for line in raw.splitlines()), name
    admin = _lines(tmp_path / "log" / "admin.log")
    assert len(admin) == 1 and admin[0]["operator"] == forged
    assert admin[0]["command"] == "user add a@example.com\r\nx"
    (traffic,) = _lines(tmp_path / "log" / "traffic.log")
    assert traffic["user"] == "a@example.com\nb" and traffic["dir"] == "in"


def test_logins_and_deliveries_reach_the_metrics(tmp_path):
    from xmail import metrics

    def value(name, **labels):
        return metrics.REGISTRY.get_sample_value(name, labels) or 0.0

    before = (value("xmail_logins_total", protocol="pop3", result="fail"),
              value("xmail_deliveries_total"), value("xmail_delivered_bytes_total"),
              value("xmail_mail_events_total", event="purged"))
    audit = AuditLog(_settings(tmp_path))
    audit.login("a@example.com", "pop3", "192.0.2.1", "USER", "fail")
    audit.mail("received", recipients="a@example.com,b@example.com", size=100, user="")
    audit.mail("purged", account="a@example.com", folder="Recycle", size=100)
    audit.close()
    after = (value("xmail_logins_total", protocol="pop3", result="fail"),
             value("xmail_deliveries_total"), value("xmail_delivered_bytes_total"),
             value("xmail_mail_events_total", event="purged"))
    assert [a - b for a, b in zip(after, before, strict=True)] == [1, 2, 200, 1]
