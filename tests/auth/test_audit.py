"""The audit log: JSON lines under data_dir/log, CR/LF escaped, plus
twisted.logger events."""

from __future__ import annotations

import dataclasses
import json

from twisted.logger import globalLogPublisher
from zope.interface.verify import verifyObject

from xmail.auth.audit import AuditLog
from xmail.auth.interfaces import IAuditLog
from xmail.config import Settings


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
