# -*- test-case-name: tests.ops.test_server -*-
"""Audit logs, statistics and /metrics against a real running server: real
SMTP, IMAP and HTTP clients, and `xmailctl` as a subprocess on the server's
data directory."""

from __future__ import annotations

import base64
import csv
import imaplib
import io
import json
import os
import re
import smtplib
import subprocess
import sys
import urllib.error
import urllib.request
from typing import Any

import pytest

from tests.conftest import PASSWORD
from xmail.ops import queries

ALICE, BOB = "alice@example.com", "bob@example.com"
# Remote mail goes to a closed port: it stays queued (temporary failure).
REMOTE = '[transport]\n"remote.test" = "127.0.0.1:1"\n'


def xmailctl(server: Any, *argv: str, stdin: str = "", env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([sys.executable, "-m", "xmail.cli", "--data", server.settings.data_dir, *argv],
                          input=stdin, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})
    assert proc.returncode == 0, (argv, proc.stdout, proc.stderr)
    return proc.stdout


def csv_rows(text: str) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(text)))


def mail_log(server: Any) -> list[dict[str, Any]]:
    with open(os.path.join(server.settings.path("log"), "mail.log"), encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def message(sender: str, to: str, subject: str, body: str = "hello") -> bytes:
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject}@example.com>\r\n\r\n{body}\r\n").encode()


@pytest.fixture
def remote_server(make_server: Any) -> Any:
    srv = make_server(REMOTE)
    srv.add_domain("example.com")
    srv.add_user(ALICE)
    srv.add_user(BOB, quota_bytes=100_000, quota_messages=10)
    return srv


def test_traffic_statistics_from_real_smtp_deliveries(remote_server: Any) -> None:
    server = remote_server
    inbound = message("x@remote.org", ALICE, "in1", "x" * 70 + "\r\n" + "x" * 400)
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
        assert s.sendmail("x@remote.org", [ALICE], inbound) == {}
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as s:
        s.login(ALICE, PASSWORD)
        assert s.sendmail(ALICE, [BOB, "dave@remote.test"], message(ALICE, BOB, "out1")) == {}
        assert s.sendmail(ALICE, [BOB], message(ALICE, BOB, "out2", ("y" * 70 + "\r\n") * 14)) == {}
    received = [e for e in mail_log(server) if e["event"] == "received"]
    assert [e["message_id"] for e in received] == ["<in1@example.com>", "<out1@example.com>",
                                                   "<out2@example.com>"]
    sizes = [e["size"] for e in received]
    assert sizes[0] == len(inbound)

    rows = {row["user"]: row for row in csv_rows(xmailctl(server, "stats", "traffic", "--csv"))}
    assert set(rows) == {ALICE, BOB}
    alice, bob = rows[ALICE], rows[BOB]
    assert (alice["received_external_messages"], alice["received_external_bytes"]) == ("1", str(sizes[0]))
    assert (alice["sent_internal_messages"], alice["sent_internal_bytes"]) == (
        "2", str(sizes[1] + sizes[2]))
    assert (alice["sent_external_messages"], alice["sent_external_bytes"]) == ("1", str(sizes[1]))
    assert alice["received_internal_messages"] == "0"
    assert (bob["received_internal_messages"], bob["received_internal_bytes"]) == (
        "2", str(sizes[1] + sizes[2]))
    assert bob["sent_internal_messages"] == bob["sent_external_messages"] == "0"
    # One record a line without --csv; a user filter.
    lines = xmailctl(server, "stats", "traffic", "--user", BOB).splitlines()
    assert lines[0] == "\t".join(queries.TRAFFIC_HEADER)
    assert len(lines) == 2 and lines[1].split("\t")[1:4] == [BOB, "2", str(sizes[1] + sizes[2])]


def test_usage_with_quota(remote_server: Any) -> None:
    server = remote_server
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
        for i in range(3):
            s.sendmail("x@remote.org", [BOB], message("x@remote.org", BOB, f"q{i}", ("z" * 70 + "\r\n") * 72))
    usage = server.call(lambda: server.ctx.store.mailbox(BOB).quota())
    assert usage.messages_used == 3 and usage.bytes_used > 15000
    rows = {row["address"]: row for row in csv_rows(
        xmailctl(server, "stats", "usage", "--domain", "example.com", "--csv"))}
    assert set(rows) == {ALICE, BOB}
    bob = rows[BOB]
    assert (bob["bytes_used"], bob["messages_used"]) == (str(usage.bytes_used), "3")
    assert (bob["bytes_limit"], bob["messages_limit"]) == ("100000", "10")
    assert bob["bytes_percent"] == f"{usage.bytes_used / 1000:.1f}"
    assert bob["messages_percent"] == "30.0"
    # Alice has the defaults: no byte limit (no percentage), 50000 messages.
    assert rows[ALICE]["bytes_percent"] == "" and rows[ALICE]["messages_limit"] == "50000"
    header, _alice, bob_line = xmailctl(server, "stats", "usage").splitlines()
    assert header == "\t".join(queries.USAGE_COLUMNS)
    assert bob_line.split("\t")[:3] == [BOB, str(usage.bytes_used), "3"]


def _imap_login(server: Any, user: str, password: str) -> bool:
    with imaplib.IMAP4("127.0.0.1", server.port("imap")) as imap:
        try:
            imap.login(user, password)
        except imaplib.IMAP4.error:
            return False
        imap.logout()
        return True


def test_login_log_queries_on_a_running_server(server: Any) -> None:
    assert _imap_login(server, ALICE, PASSWORD)
    assert not _imap_login(server, ALICE, "wrong")
    assert _imap_login(server, BOB, PASSWORD)
    rows = csv_rows(xmailctl(server, "log", "logins", "--user", ALICE, "--csv", "--since", "1h"))
    assert [(r["event"], r["protocol"], r["result"]) for r in rows] == [
        ("login", "imap", "ok"), ("logout", "imap", ""), ("login", "imap", "fail")]
    assert {r["ip"] for r in rows} == {"127.0.0.1"}
    lines = xmailctl(server, "log", "logins", "--domain", "example.com").splitlines()
    assert len(lines) == 5 and all(len(line.split("\t")) == 7 for line in lines)
    assert xmailctl(server, "log", "logins", "--domain", "example.org") == ""


def test_crlf_injection_in_a_login_name_stays_escaped(server: Any) -> None:
    forged = 'mallory@example.com\r\n{"ts":1,"event":"login","account":"alice@example.com","result":"ok"}'
    token = base64.b64encode(f"\0{forged}\0nope".encode()).decode()
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as s:
        s.ehlo()
        code, _ = s.docmd("AUTH", "PLAIN " + token)
        assert code == 535
    with open(os.path.join(server.settings.path("log"), "login.log"), encoding="utf-8") as f:
        raw = f.read()
    assert raw.count("\n") == 1 and "\r" not in raw
    assert json.loads(raw)["account"] == forged
    (line,) = xmailctl(server, "log", "logins").splitlines()
    assert line.split("\t")[2] == forged.replace("\r", "\\r").replace("\n", "\\n")
    assert xmailctl(server, "log", "logins", "--user", ALICE) == ""


def test_admin_log_of_xmailctl_runs_against_a_running_server(server: Any) -> None:
    env = {"SUDO_USER": "operator1"}
    xmailctl(server, "user", "add", "carol@example.com", "--password-stdin", stdin="s3cret pass\n", env=env)
    xmailctl(server, "user", "disable", "carol@example.com", env=env)
    xmailctl(server, "user", "list", env=env)  # reads are not recorded
    xmailctl(server, "alias", "add", "c@example.com", "carol@example.com")
    assert server.ctx.directory.user("carol@example.com").enabled is False  # the server sees it
    rows = csv_rows(xmailctl(server, "log", "admin", "--csv"))
    assert [r["command"].split(server.settings.data_dir + " ")[1] for r in rows] == [
        "user add carol@example.com --password-stdin", "user disable carol@example.com",
        "alias add c@example.com carol@example.com"]
    assert [r["operator"] for r in rows[:2]] == ["operator1", "operator1"]
    assert all(r["result"] == "ok" for r in rows)
    assert "s3cret" not in open(os.path.join(server.settings.path("log"), "admin.log")).read()
    assert len(csv_rows(xmailctl(server, "log", "admin", "--csv", "--user", "operator1"))) == 2


# -- /metrics ----------------------------------------------------------------------------


def scrape(port: int, host: str = "127.0.0.1") -> dict[str, float]:
    with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=30) as response:
        assert response.headers["content-type"].startswith("text/plain; version=")
        text = response.read().decode()
    samples = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            samples[name] = float(value)
    return samples


def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def test_metrics_change_with_logins_deliveries_and_the_queue(make_server: Any) -> None:
    server = make_server(REMOTE)
    server.add_domain("example.com")
    server.add_user(ALICE)
    port = server.port("http")
    before = scrape(port)
    assert before["xmail_queue_messages"] == 0
    assert _imap_login(server, ALICE, PASSWORD)
    assert not _imap_login(server, ALICE, "wrong")
    with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
        s.sendmail("x@remote.org", [ALICE], message("x@remote.org", ALICE, "m1"))
    with smtplib.SMTP("127.0.0.1", server.port("submission")) as s:
        s.login(ALICE, PASSWORD)
        s.sendmail(ALICE, ["dave@remote.test"], message(ALICE, "dave@remote.test", "m2"))
    after = scrape(port)
    assert delta(after, before, 'xmail_logins_total{protocol="imap",result="ok"}') == 1
    assert delta(after, before, 'xmail_logins_total{protocol="imap",result="fail"}') == 1
    assert delta(after, before, 'xmail_logins_total{protocol="submission",result="ok"}') == 1
    assert delta(after, before, 'xmail_connections_total{protocol="imap"}') == 2
    assert delta(after, before, 'xmail_connections_total{protocol="smtp"}') == 1
    assert delta(after, before, 'xmail_connections_total{protocol="http"}') == 1
    assert after['xmail_connections_open{protocol="imap"}'] == before.get(
        'xmail_connections_open{protocol="imap"}', 0)
    assert delta(after, before, "xmail_deliveries_total") == 1
    assert delta(after, before, 'xmail_mail_events_total{event="received"}') == 2
    assert delta(after, before, "xmail_index_commit_duration_seconds_count") >= 2
    assert delta(after, before, "xmail_index_commit_duration_seconds_sum") > 0
    assert after["xmail_queue_messages"] == 1
    assert 0 <= after["xmail_queue_oldest_age_seconds"] < 120


def test_command_latency_is_exposed_and_bounded(server: Any) -> None:
    from xmail import metrics

    metrics.command_latency("imap", "fetch", 0.003)
    metrics.command_latency("imap", "FETCH", 0.2)
    for i in range(metrics.MAX_COMMANDS + 5):
        metrics.command_latency("testproto", f"VERB{i}", 0.001)
    metrics.command_latency("testproto", "bad verb\r\n", 0.001)
    samples = scrape(server.port("http"))
    fetch = 'xmail_command_duration_seconds_bucket{command="FETCH",le="0.005",protocol="imap"}'
    assert samples[fetch] >= 1
    assert samples['xmail_command_duration_seconds_count{command="FETCH",protocol="imap"}'] >= 2
    verbs = {re.search(r'command="([^"]*)"', k)[1] for k in samples
             if k.startswith("xmail_command_duration_seconds_count") and 'protocol="testproto"' in k}
    assert len(verbs) == metrics.MAX_COMMANDS + 1 and "OTHER" in verbs


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as e:
        return e.code


def test_metrics_off_on_a_non_loopback_address_unless_configured(make_server: Any) -> None:
    elsewhere = ("tcp:0:interface=127.0.0.2",)  # not loopback to xmail (see ServerContext.is_loopback)
    closed = make_server(http=elsewhere)
    assert _status(f"http://127.0.0.2:{closed.port('http')}/metrics") == 404
    assert _status(f"http://127.0.0.2:{closed.port('http')}/") == 200  # the setup page still is
    public = make_server("[metrics]\npublic = true\n", http=elsewhere)
    assert "xmail_connections_total" in str(scrape(public.port("http"), "127.0.0.2"))
    fenced = make_server('[metrics]\npublic = true\nallow = ["10.0.0.0/8"]\n', http=elsewhere)
    assert _status(f"http://127.0.0.2:{fenced.port('http')}/metrics") == 404
    disabled = make_server("[metrics]\nenabled = false\n")
    assert _status(f"http://127.0.0.1:{disabled.port('http')}/metrics") == 404


def test_expunges_deletions_and_purges_reach_the_mail_log(server: Any) -> None:
    import poplib

    for n in range(3):
        with smtplib.SMTP("127.0.0.1", server.port("smtp")) as s:
            s.sendmail("x@remote.org", [ALICE], message("x@remote.org", ALICE, f"gone{n}"))
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"))
    imap.login(ALICE, PASSWORD)
    imap.select("INBOX")
    imap.store("1", "+FLAGS", "(\\Deleted)")
    imap.expunge()
    imap.logout()
    pop = poplib.POP3("127.0.0.1", server.port("pop3"))
    pop.user(ALICE)
    pop.pass_(PASSWORD)
    pop.dele(1)
    pop.quit()
    events = [e for e in mail_log(server) if e["event"] in ("expunged", "deleted")]
    assert [(e["event"], e["account"], e["folder"], e["recycled"]) for e in events] == [
        ("expunged", ALICE, "INBOX", True), ("deleted", ALICE, "INBOX", True)]
    assert events[0]["uid"] == 1 and events[0]["size"] > 0 and events[1]["uid"] == 2
    # Recycle's expiry: the purge timer's job logs what it removed.
    server.call(server.service.core._purge_recycle_at, server.ctx.reactor.seconds() + 6 * 86400)
    [purged] = [e for e in mail_log(server) if e["event"] == "purged"]
    assert purged["count"] == 2 and purged["folder"] == "Recycle"
