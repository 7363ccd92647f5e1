# -*- test-case-name: tests.ops.test_logfiles -*-
"""Day files, rotation and pruning with a controllable clock, traffic
compaction, and the pruning timer the core service starts."""

from __future__ import annotations

import dataclasses
import json
import os

from twisted.internet import defer, task

from xmail.config import Settings, parse
from xmail.ops import logfiles
from xmail.ops.audit import AuditLog

DAY = 86400
T0 = 1795737600.0  # 2026-11-27T00:00:00Z


class Clock:
    def __init__(self, now: float):
        self.now = now

    def __call__(self) -> float:
        return self.now


def _settings(tmp_path, toml: str = "") -> Settings:
    settings = parse(toml, "<test>") if toml else Settings()
    return dataclasses.replace(settings, server=dataclasses.replace(settings.server,
                                                                    data_dir=str(tmp_path)))


def _names(tmp_path) -> list[str]:
    return sorted(os.listdir(tmp_path / "log"))


def test_each_day_has_its_own_file_and_the_link_follows(tmp_path):
    clock = Clock(T0 + 3600)
    audit = AuditLog(_settings(tmp_path), clock=clock)
    audit.login("alice@example.com", "imap", "192.0.2.1", "PLAIN", "ok")
    clock.now = T0 + DAY - 0.5  # 23:59:59.5, still the first day
    audit.login("alice@example.com", "imap", "192.0.2.1", "PLAIN", "fail")
    clock.now = T0 + DAY + 1  # past midnight: the next file
    audit.login("bob@example.com", "pop3", "192.0.2.2", "USER", "ok")
    audit.close()
    assert _names(tmp_path) == ["login-2026-11-27.log", "login-2026-11-28.log", "login.log"]
    assert os.readlink(tmp_path / "log" / "login.log") == "login-2026-11-28.log"
    first = (tmp_path / "log" / "login-2026-11-27.log").read_text().splitlines()
    assert [json.loads(line)["result"] for line in first] == ["ok", "fail"]
    events = list(logfiles.read_events(str(tmp_path / "log"), "login"))
    assert [e["account"] for e in events] == ["alice@example.com", "alice@example.com", "bob@example.com"]
    since = list(logfiles.read_events(str(tmp_path / "log"), "login", since=T0 + DAY))
    assert [e["account"] for e in since] == ["bob@example.com"]


def test_an_old_single_file_log_is_kept_under_a_day_name(tmp_path):
    (tmp_path / "log").mkdir()
    (tmp_path / "log" / "mail.log").write_text('{"ts":1,"event":"received"}\n')
    os.utime(tmp_path / "log" / "mail.log", (T0, T0))
    audit = AuditLog(_settings(tmp_path), clock=Clock(T0 + 10))
    audit.mail("expunged", account="alice@example.com", folder="INBOX", uid=3)
    audit.close()
    assert (tmp_path / "log" / "mail-2026-11-27-old.log").read_text() == '{"ts":1,"event":"received"}\n'
    assert os.path.islink(tmp_path / "log" / "mail.log")


def _fill(tmp_path, settings: Settings, days: int) -> Clock:
    """One login, mail, admin and traffic event on each of `days` days."""
    clock = Clock(T0)
    audit = AuditLog(settings, clock=clock)
    for day in range(days):
        clock.now = T0 + day * DAY + 600
        audit.login("alice@example.com", "imap", "192.0.2.1", "PLAIN", "ok")
        audit.mail("received", recipients="alice@example.com", sender="x@example.org", size=100,
                   user="")
        audit.admin("root", ["user", "add", "u@example.com"], "ok")
    audit.close()
    return clock


def test_pruning_keeps_30_days_of_logs_and_3_months_of_traffic(tmp_path):
    settings = _settings(tmp_path)
    _fill(tmp_path, settings, 100)
    now = T0 + 99 * DAY + 3600  # the last day, 2027-03-06
    compacted, removed = AuditLog(settings).prune(now)
    directory = str(tmp_path / "log")
    login_days = [day for day, _e, _n in logfiles.day_files(directory, "login")]
    assert len(login_days) == 30 and login_days[-1] == logfiles.day_of(now)
    assert len(logfiles.day_files(directory, "mail")) == 30
    assert len(logfiles.day_files(directory, "admin")) == 100  # kept a year
    traffic = logfiles.day_files(directory, "traffic")
    assert len(traffic) == 92
    # Finished days are summed; today and yesterday stay raw (still written).
    assert [ext for _d, ext, _n in traffic][-3:] == ["sum", "log", "log"]
    assert len(compacted) == 98 and len(removed) == 70 + 70 + 8
    totals = logfiles.read_traffic(directory)
    assert len(totals) == 92
    assert all(t.received_external_messages == 1 and t.received_external_bytes == 100
               for t in totals.values())
    # A second run has nothing left to do.
    assert AuditLog(settings).prune(now) == ([], [])


def test_kept_days_are_configurable_and_zero_keeps_forever(tmp_path):
    settings = _settings(tmp_path, "[log]\nlogin_days = 2\nmail_days = 0\ntraffic_days = 5\n")
    _fill(tmp_path, settings, 10)
    AuditLog(settings).prune(T0 + 9 * DAY + 60)
    directory = str(tmp_path / "log")
    assert [d for d, _e, _n in logfiles.day_files(directory, "login")] == ["2026-12-05", "2026-12-06"]
    assert len(logfiles.day_files(directory, "mail")) == 10
    assert len(logfiles.day_files(directory, "traffic")) == 5


def test_the_pruning_timer_runs_at_start_and_every_interval(tmp_path):
    settings = _settings(tmp_path, "[log]\nlogin_days = 1\nprune_interval = 600\n")
    clock = _fill(tmp_path, settings, 3)
    reactor = task.Clock()
    audit = AuditLog(settings, clock=clock)
    audit.run_in_thread = lambda fn, *a: defer.maybeDeferred(fn, *a)
    clock.now = T0 + 1 * DAY + 60
    audit.start(reactor)
    directory = str(tmp_path / "log")
    # At start: day 1 is today, day 0 goes (login_days = 1); day 2 is "future".
    assert [d for d, _e, _n in logfiles.day_files(directory, "login")] == ["2026-11-28", "2026-11-29"]
    clock.now = T0 + 2 * DAY + 60
    reactor.advance(599)
    assert len(logfiles.day_files(directory, "login")) == 2
    reactor.advance(1)
    assert [d for d, _e, _n in logfiles.day_files(directory, "login")] == ["2026-11-29"]
    audit.stop()
    assert not reactor.getDelayedCalls()


def test_traffic_classification_with_explicit_fields(tmp_path):
    audit = AuditLog(_settings(tmp_path), clock=Clock(T0 + 5))
    # Submitted by alice to a local user and a remote one.
    audit.mail("received", user="alice@example.com", sender="alice@example.com",
               local_recipients="bob@example.com", remote_recipients="x@example.org", size=1000)
    # MX mail that the caller says comes from one of ours (internal).
    audit.mail("received", user="", sender="carol@example.com", recipients="bob@example.com",
               internal=True, size=10)
    # No recipients, no traffic; other events never count.
    audit.mail("received", user="", sender="x@example.org", recipients="", size=5)
    audit.mail("expunged", account="bob@example.com", size=1000, folder="INBOX")
    audit.close()
    totals = logfiles.read_traffic(str(tmp_path / "log"))
    bob = totals[("2026-11-27", "bob@example.com")]
    alice = totals[("2026-11-27", "alice@example.com")]
    assert (bob.received_internal_messages, bob.received_internal_bytes) == (2, 1010)
    assert bob.received_external_messages == bob.sent_internal_messages == 0
    assert (alice.sent_internal_messages, alice.sent_internal_bytes) == (1, 1000)
    assert (alice.sent_external_messages, alice.sent_external_bytes) == (1, 1000)
    assert alice.received_internal_messages == alice.received_external_messages == 0
    assert set(totals) == {("2026-11-27", "bob@example.com"), ("2026-11-27", "alice@example.com")}


def test_torn_and_foreign_lines_are_skipped(tmp_path):
    audit = AuditLog(_settings(tmp_path), clock=Clock(T0 + 5))
    audit.login("alice@example.com", "imap", "192.0.2.1", "PLAIN", "ok")
    audit.close()
    path = tmp_path / "log" / "login-2026-11-27.log"
    with open(path, "a", encoding="utf-8") as f:
        f.write('[1,2]\n{"no":"ts"}\n{"ts":17957')  # a crash in the middle of a write
    assert [e["account"] for e in logfiles.read_events(str(tmp_path / "log"), "login")] == [
        "alice@example.com"]
