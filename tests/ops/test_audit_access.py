# -*- test-case-name: tests.ops.test_audit_access -*-
"""Issue 16 logging: the http listener's requests and the per-message removal
events are audit-log lines (data_dir/log), not main-log lines, and the access
log is written at a bounded rate."""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import urllib.request
from typing import Any

from twisted.logger import formatEvent, globalLogPublisher

from xmail.config import LogSettings, ServerSettings, Settings
from xmail.ops.audit import AuditLog


def _settings(tmp_path: Any, **log: Any) -> Settings:
    return Settings(server=ServerSettings(data_dir=str(tmp_path)),
                    log=dataclasses.replace(LogSettings(), **log))


def _records(directory: str, kind: str) -> list[dict[str, Any]]:
    out = []
    for path in sorted(glob.glob(os.path.join(directory, f"{kind}-*.log"))):
        with open(path, encoding="utf-8") as f:
            out += [json.loads(line) for line in f]
    return out


class Captured:
    """Main-log events while in use."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def __enter__(self) -> Captured:
        globalLogPublisher.addObserver(self.events.append)
        return self

    def __exit__(self, *exc: Any) -> None:
        globalLogPublisher.removeObserver(self.events.append)


def test_removal_events_stay_out_of_the_main_log(tmp_path: Any) -> None:
    audit = AuditLog(_settings(tmp_path), clock=lambda: 1700000000.0)
    with Captured() as main:
        for uid in range(100):
            audit.mail("expunged", account="a@example.com", folder="INBOX", uid=uid, size=1, message_id="")
        audit.mail("received", recipients="a@example.com", sender="b@example.com", size=1, message_id="",
                   protocol="mx", client_ip="127.0.0.1", user="")
    audit.close()
    mail_lines = [e for e in main.events if e.get("log_namespace") == "xmail.audit"]
    assert len(mail_lines) == 1 and mail_lines[0]["event"] == "received"
    assert len([r for r in _records(audit.directory, "mail") if r["event"] == "expunged"]) == 100


def test_access_log_rate_is_bounded(tmp_path: Any) -> None:
    now = [1700000000.0]
    audit = AuditLog(_settings(tmp_path, access_lines_per_second=50), clock=lambda: now[0])
    for i in range(200):
        audit.access(ip="127.0.0.1", method="GET", path=f"/{i}", status=200, size=10, agent="")
    now[0] += 1
    audit.access(ip="127.0.0.1", method="GET", path="/next", status=200, size=10, agent="")
    audit.close()
    records = _records(audit.directory, "access")
    assert [r["event"] for r in records] == ["request"] * 50 + ["suppressed", "request"]
    assert records[50]["count"] == 150 and records[51]["path"] == "/next"


def test_http_requests_go_to_the_access_log_not_the_main_log(server: Any) -> None:
    url = f"http://127.0.0.1:{server.port('http')}/mail/config-v1.1.xml?emailaddress=alice%40example.com"
    with Captured() as main:
        for _ in range(20):
            with urllib.request.urlopen(url, timeout=10) as response:
                assert response.status == 200
    requests = [r for r in _records(server.settings.path("log"), "access") if r["event"] == "request"]
    assert len(requests) == 20 and requests[0]["path"].startswith("/mail/config-v1.1.xml")
    assert requests[0]["status"] == 200 and requests[0]["ip"] == "127.0.0.1"
    assert not [e for e in main.events if "config-v1.1.xml" in formatEvent(e)]


def test_expunge_and_dele_against_the_server_stay_out_of_the_main_log(server: Any) -> None:
    """Issue 16: an expunge of 10,000 messages was 10,000 main-log lines.
    Now 20 IMAP expunges and 5 POP3 deletions are 25 audit lines, and the
    main log gets no line per message."""
    import imaplib
    import poplib

    from tests.conftest import PASSWORD
    from tests.protocols.imap_support import deliver, message

    for n in range(30):
        deliver(server, "alice@example.com", message(f"m{n}", sender=f"s{n}@example.org"))
    with Captured() as main:
        imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
        imap.login("alice@example.com", PASSWORD)
        imap.select("INBOX")
        assert imap.store("1:20", "+FLAGS", "(\\Deleted)")[0] == "OK"
        typ, expunged = imap.expunge()
        assert typ == "OK" and len(expunged) == 20
        imap.logout()
        pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
        pop.user("alice@example.com")
        pop.pass_(PASSWORD)
        for n in range(1, 6):
            pop.dele(n)
        pop.quit()
    records = _records(server.settings.path("log"), "mail")
    assert len([r for r in records if r["event"] == "expunged" and r["folder"] == "INBOX"]) == 20
    assert len([r for r in records if r["event"] == "deleted"]) == 5
    texts = [formatEvent(e) for e in main.events]
    assert not [t for t in texts if "expunged" in t or "deleted" in t or "recycled" in t], texts
    assert len(main.events) < 20, texts  # a few lines per session, none per message
