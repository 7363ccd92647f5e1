# -*- test-case-name: tests.ops.test_logfiles -*-
"""The files under data_dir/log: naming, reading, pruning, traffic compaction.

Every audit log is a set of day files, `KIND-YYYY-MM-DD.log` (UTC day of the
event), holding one JSON object a line.  A writer picks the file from the
event's own time, so daily rotation needs no rename and no coordination
between worker processes: at midnight each process simply opens the next
day's file.  `KIND.log` is a symlink to the newest day (for `tail -F`).

Pruning deletes day files older than the kept days ([log] in the config).
Traffic lines of days that are over (two days back, so no process still
writes them) are summed into `traffic-YYYY-MM-DD.sum` (per user totals,
written to a temporary file and renamed) and the raw file deleted: three
months of statistics stay small.

Everything here does file I/O: the daemon calls it in a thread.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any

from xmail.config import Settings

KINDS = ("login", "mail", "admin", "traffic", "access")
_DAY_FILE = re.compile(r"(?P<kind>[a-z]+)-(?P<day>\d{4}-\d{2}-\d{2})\.(?P<ext>log|sum)")
DAY = 86400


def day_of(ts: float) -> str:
    """The UTC day of a Unix time, as YYYY-MM-DD."""
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%d")


def day_start(day: str) -> float:
    parsed = datetime.datetime.strptime(day, "%Y-%m-%d").replace(tzinfo=datetime.UTC)
    return parsed.timestamp()


def day_file(kind: str, day: str, ext: str = "log") -> str:
    return f"{kind}-{day}.{ext}"


def keep_days(settings: Settings, kind: str) -> int:
    return getattr(settings.log, f"{kind}_days")


def day_files(directory: str, kind: str) -> list[tuple[str, str, str]]:
    """(day, ext, file name) of one kind, oldest first."""
    try:
        names = os.listdir(directory)
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        match = _DAY_FILE.fullmatch(name)
        if match and match["kind"] == kind:
            found.append((match["day"], match["ext"], name))
    return sorted(found)


def read_events(directory: str, kind: str, since: float | None = None,
                until: float | None = None) -> Iterator[dict[str, Any]]:
    """Records of one log kind in time order (per file), from `since`.
    A line that is not a JSON object (a torn write after a crash) is skipped."""
    first_day = day_of(since) if since is not None else None
    for day, ext, name in day_files(directory, kind):
        if ext != "log" or (first_day is not None and day < first_day):
            continue
        try:
            f = open(os.path.join(directory, name), encoding="utf-8", errors="replace")
        except FileNotFoundError:
            continue  # pruned meanwhile
        with f:
            for line in f:
                try:
                    record = json.loads(line)
                except ValueError:
                    continue
                if not isinstance(record, dict):
                    continue
                ts = record.get("ts")
                if not isinstance(ts, int | float):
                    continue
                if since is not None and ts < since:
                    continue
                if until is not None and ts >= until:
                    continue
                yield record


# -- traffic -----------------------------------------------------------------------


@dataclass
class Traffic:
    """One user's traffic on one day."""

    received_internal_messages: int = 0
    received_internal_bytes: int = 0
    received_external_messages: int = 0
    received_external_bytes: int = 0
    sent_internal_messages: int = 0
    sent_internal_bytes: int = 0
    sent_external_messages: int = 0
    sent_external_bytes: int = 0

    def add(self, direction: str, scope: str, messages: int, size: int) -> None:
        way = "received" if direction == "in" else "sent"
        prefix = f"{way}_{'internal' if scope == 'internal' else 'external'}"
        setattr(self, f"{prefix}_messages", getattr(self, f"{prefix}_messages") + messages)
        setattr(self, f"{prefix}_bytes", getattr(self, f"{prefix}_bytes") + size)

    def merge(self, values: Iterable[int]) -> None:
        for f, value in zip(fields(self), values, strict=False):
            if isinstance(value, int):
                setattr(self, f.name, getattr(self, f.name) + value)

    def values(self) -> list[int]:
        return [getattr(self, f.name) for f in fields(self)]


TRAFFIC_COLUMNS = tuple(f.name for f in fields(Traffic))


def _sum_raw(path: str) -> dict[str, Traffic]:
    totals: dict[str, Traffic] = {}
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
                user, direction, scope = record["user"], record["dir"], record["scope"]
                messages, size = int(record.get("messages", 1)), int(record["bytes"])
            except (ValueError, KeyError, TypeError):
                continue
            if not isinstance(user, str):
                continue
            totals.setdefault(user, Traffic()).add(direction, scope, messages, size)
    return totals


def read_traffic(directory: str, since: float | None = None) -> dict[tuple[str, str], Traffic]:
    """(day, user) -> Traffic from the summaries and the raw day files."""
    first_day = day_of(since) if since is not None else None
    result: dict[tuple[str, str], Traffic] = {}
    for day, ext, name in day_files(directory, "traffic"):
        if first_day is not None and day < first_day:
            continue
        path = os.path.join(directory, name)
        try:
            if ext == "sum":
                with open(path, encoding="utf-8") as f:
                    summary = json.load(f)
                for user, values in summary.get("users", {}).items():
                    result.setdefault((day, user), Traffic()).merge(values)
            else:
                for user, traffic in _sum_raw(path).items():
                    result.setdefault((day, user), Traffic()).merge(traffic.values())
        except (FileNotFoundError, ValueError):
            continue
    return result


def compact_traffic(directory: str, now: float) -> list[str]:
    """Sum the raw traffic files of finished days; the days compacted."""
    last = day_of(now - 2 * DAY)
    done = []
    for day, ext, name in day_files(directory, "traffic"):
        if ext != "log" or day > last:
            continue
        raw = os.path.join(directory, name)
        summary_path = os.path.join(directory, day_file("traffic", day, "sum"))
        totals = _sum_raw(raw)
        if os.path.exists(summary_path):  # a raw file reappeared (clock set back): merge
            with open(summary_path, encoding="utf-8") as f:
                for user, values in json.load(f).get("users", {}).items():
                    totals.setdefault(user, Traffic()).merge(values)
        document = {"columns": list(TRAFFIC_COLUMNS),
                    "users": {user: t.values() for user, t in sorted(totals.items())}}
        tmp = summary_path + ".tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(document, f, separators=(",", ":"))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, summary_path)
        os.unlink(raw)
        done.append(day)
    return done


def prune(directory: str, settings: Settings, now: float) -> list[str]:
    """Delete day files older than their kind's kept days; the names removed.
    A file of day D is kept while D is within the last N days (today counts);
    N = 0 keeps a kind forever."""
    removed = []
    for kind in KINDS:
        days = keep_days(settings, kind)
        if days == 0:  # 0: keep forever
            continue
        oldest_kept = day_of(now - (days - 1) * DAY)
        for day, _ext, name in day_files(directory, kind):
            if day < oldest_kept:
                try:
                    os.unlink(os.path.join(directory, name))
                    removed.append(name)
                except FileNotFoundError:
                    pass
    return removed


def maintain(directory: str, settings: Settings, now: float) -> tuple[list[str], list[str]]:
    """One pruning run: compact finished traffic days, then prune."""
    compacted = compact_traffic(directory, now)
    return compacted, prune(directory, settings, now)
