# -*- test-case-name: tests.ops.test_cli -*-
"""`xmailctl log` and `xmailctl stats traffic` on logs written by AuditLog
with a controllable clock: filters, --since, CSV, escaping, and the admin
log of in-process runs (subprocess runs against a running server are in
test_server.py)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json

import pytest

from xmail import cli
from xmail.config import Settings
from xmail.ops import queries
from xmail.ops.admin import redact
from xmail.ops.audit import AuditLog

T0 = 1795737600.0  # 2026-11-27T00:00:00Z
DAY = 86400


def run(data_dir, *argv):
    # The logs fixture writes log files only: no index yet (--init).
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(["--data", str(data_dir), "--init", *argv], stdin=io.StringIO(""), stdout=out,
                      stderr=err)
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def logs(tmp_path):
    settings = Settings()
    settings = dataclasses.replace(settings, server=dataclasses.replace(settings.server,
                                                                        data_dir=str(tmp_path)))
    now = [T0 + 3600]
    audit = AuditLog(settings, clock=lambda: now[0])
    audit.login("alice@example.com", "imap", "192.0.2.1", "PLAIN", "ok")
    audit.login("bob@example.org", "pop3", "192.0.2.2", "USER", "fail")
    now[0] = T0 + DAY + 7200
    audit.login("alice@example.com", "submission", "192.0.2.1", "LOGIN", "fail")
    audit.login("=cmd|' /C calc'!A0\r\nforged", "imap", "192.0.2.3", "PLAIN", "fail")
    audit.mail("received", protocol="mx", user="", sender="x@example.net",
               recipients="alice@example.com", size=120, message_id="<m1@example.net>")
    audit.mail("received", protocol="submission", user="alice@example.com", sender="alice@example.com",
               local_recipients="bob@example.org", remote_recipients="z@example.net", size=300,
               message_id="<m2@example.com>")
    audit.mail("expunged", account="bob@example.org", folder="INBOX", uid=7, size=300,
               message_id="<m2@example.com>", result="ok")
    audit.close()
    return tmp_path


def test_log_logins_one_record_a_line_with_filters(logs):
    status, out, err = run(logs, "log", "logins")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert len(lines) == 4
    assert lines[0] == "2026-11-27T01:00:00Z\tlogin\talice@example.com\timap\t192.0.2.1\tPLAIN\tok"
    # CR LF from a client arrive escaped: still one line.
    assert lines[3].split("\t")[2] == "=cmd|' /C calc'!A0\\r\\nforged"
    out = run(logs, "log", "logins", "--user", "Alice@Example.com")[1]
    assert [line.split("\t")[3] for line in out.splitlines()] == ["imap", "submission"]
    out = run(logs, "log", "logins", "--domain", "example.org")[1]
    assert [line.split("\t")[2] for line in out.splitlines()] == ["bob@example.org"]
    out = run(logs, "log", "logins", "--since", "2026-11-28")[1]
    assert len(out.splitlines()) == 2
    out = run(logs, "log", "logins", "--since", "2026-11-28T02:00:01", "--user", "alice@example.com")[1]
    assert out == ""


def test_log_mail_matches_any_address_field(logs):
    out = run(logs, "log", "mail", "--user", "bob@example.org")[1].splitlines()
    assert [line.split("\t")[1] for line in out] == ["received", "expunged"]
    expunged = out[1].split("\t")
    assert expunged[2:10] == ["bob@example.org", "-", "-", "300", "INBOX", "<m2@example.com>", "ok",
                              "uid=7"]
    out = run(logs, "log", "mail", "--domain", "example.net")[1].splitlines()
    assert [line.split("\t")[7] for line in out] == ["<m1@example.net>", "<m2@example.com>"]


def test_csv_export_has_a_header_and_neutralised_cells(logs):
    status, out, _err = run(logs, "log", "logins", "--csv")
    assert status == 0
    assert out.count("\r\n") == 5  # header + 4 records, no record spans lines
    rows = list(csv.reader(io.StringIO(out)))
    assert rows[0] == ["time", "event", "account", "protocol", "ip", "method", "result"]
    assert rows[4][2] == "'=cmd|' /C calc'!A0\\r\\nforged"
    assert rows[1] == ["2026-11-27T01:00:00Z", "login", "alice@example.com", "imap", "192.0.2.1",
                       "PLAIN", "ok"]


def test_stats_traffic(logs):
    status, out, _err = run(logs, "stats", "traffic", "--csv")
    assert status == 0
    rows = list(csv.DictReader(io.StringIO(out)))
    by_user = {row["user"]: row for row in rows}
    assert set(by_user) == {"alice@example.com", "bob@example.org"}
    alice, bob = by_user["alice@example.com"], by_user["bob@example.org"]
    assert alice["day"] == bob["day"] == "2026-11-28"
    assert (alice["received_external_messages"], alice["received_external_bytes"]) == ("1", "120")
    assert (alice["sent_internal_messages"], alice["sent_external_messages"]) == ("1", "1")
    assert (alice["sent_internal_bytes"], alice["sent_external_bytes"]) == ("300", "300")
    assert (bob["received_internal_messages"], bob["received_internal_bytes"]) == ("1", "300")
    out = run(logs, "stats", "traffic", "--domain", "example.org")[1]
    # A header row names the columns (issue 16), then one record a line.
    assert out.splitlines() == ["\t".join(queries.TRAFFIC_HEADER),
                                "2026-11-28\tbob@example.org\t1\t300\t0\t0\t0\t0\t0\t0"]


def test_bad_since_is_a_clear_error(logs):
    assert run(logs, "log", "mail", "--since", "yesterday") == (
        1, "", "xmailctl: not a date: 'yesterday' (YYYY-MM-DD, YYYY-MM-DDTHH:MM, 7d, 12h)\n")


def test_changes_are_in_the_admin_log_reads_are_not(tmp_path, monkeypatch):
    monkeypatch.setenv("SUDO_USER", "carol")
    assert run(tmp_path, "domain", "add", "example.com")[0] == 0
    assert run(tmp_path, "domain", "list")[0] == 0
    assert run(tmp_path, "user", "add", "a@example.com", "--no-password")[0] == 0
    assert run(tmp_path, "user", "passwd", "a@example.com", "--password-hash",
               "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA")[0] == 0
    assert run(tmp_path, "domain", "add", "example.com")[0] == 1  # refused: logged as an error
    assert run(tmp_path, "log", "admin")[0] == 0
    records = [json.loads(line) for line in open(tmp_path / "log" / "admin.log", encoding="utf-8")]
    assert [r["command"].split(" ", 3)[3] for r in records] == [  # after "--data DIR --init"
        "domain add example.com", "user add a@example.com --no-password",
        "user passwd a@example.com --password-hash ***", "domain add example.com"]
    assert {r["operator"] for r in records} == {"carol"}
    assert [r["result"] for r in records] == ["ok", "ok", "ok", "error: domain example.com already exists"]
    assert "argon2" not in (tmp_path / "log" / "admin.log").read_text()
    out = run(tmp_path, "log", "admin", "--domain", "example.com")[1].splitlines()
    assert len(out) == 4 and out[0].split("\t")[1:4] == ["carol", records[0]["account"], "ok"]
    assert run(tmp_path, "log", "admin", "--user", "mallory")[1] == ""


def test_redact():
    assert redact(["user", "passwd", "a@b", "--password-hash=$1$x"]) == [
        "user", "passwd", "a@b", "--password-hash=***"]
    assert redact(["--password-hash", "h", "x"]) == ["--password-hash", "***", "x"]
