# -*- test-case-name: tests.ops.test_audit,tests.ops.test_audit_access -*-
"""Login, mail and admin events: JSON lines under data_dir/log, plus
twisted.logger events, metrics and per-user traffic statistics.

Files (xmail.ops.logfiles): `login-YYYY-MM-DD.log`, `mail-...`, `admin-...`,
`traffic-...`, one per UTC day of the event, and `login.log` etc. as
symlinks to the newest day.  Rotation is opening the next day's file; a
timer started by the core service (`start()`) prunes old days in a thread.

Each event is one ``os.write`` of one line to a file opened with O_APPEND,
with no fsync and no buffer.  The kernel appends the line whole even when
several worker processes share the file, and the write only copies into the
page cache (microseconds), so the reactor never waits on the disk for long.
A buffer flushed by a thread would save little and lose the last events of a
process that is killed; an fsync per event would cost milliseconds.  Values
are JSON strings, so CR and LF arrive escaped and a client cannot forge a log
line with a crafted user name.

Mail events and the fields their callers pass (any extra field is kept):

    received   one per accepted message (SMTP, after the 250 is decided):
               recipients  comma-separated accepted recipients (local users
                           and remote addresses handed to the queue)
               sender, size, message_id, protocol ("mx" | "submission"),
               client_ip, user (the authenticated submitter, "" for MX)
               optional: local_recipients / remote_recipients (comma lists;
               without them the directory decides), internal (bool: the
               sender is one of ours; default: user is set)
    sent       the queue handed a message to a remote server: sender,
               recipients, size, message_id, remote_mta, result
    bounced    a DSN was generated: sender, recipients, message_id, result
    deleted / expunged / recycled / purged
               account, folder, uid, size, message_id

Only the audit file gets a line per removed message (deleted, expunged,
recycled): in the main log an expunge of 10,000 messages was 10,000 lines.
The http listener's requests go to `access-YYYY-MM-DD.log` (`access()`), at
most [log] access_lines_per_second a second; past that they are counted and
one `suppressed` line a second says how many (an HTTP flood made twistd's log
rotate 28 times in 20 s when every request was a main-log line).

Traffic statistics come from "received" alone: every local recipient
received the message (internal when `internal`), and the submitting user, if
any, sent it (internal when a recipient is local, external when a recipient
is remote; a message to both counts once in each).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import task
from twisted.logger import Logger
from zope.interface import implementer

from xmail import metrics
from xmail.auth.interfaces import IAuditLog
from xmail.config import Settings
from xmail.ops import logfiles

MAX_VALUE = 512  # characters kept of one value
# Mail events that are one per message removed: audit file only.
_AUDIT_ONLY_EVENTS = frozenset({"deleted", "expunged", "recycled"})

_log = Logger(namespace="xmail.audit")


def _clean(value: Any) -> Any:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "backslashreplace")
    if isinstance(value, str):
        if len(value) > MAX_VALUE:
            value = value[:MAX_VALUE] + "..."
        return value
    if value is None or isinstance(value, bool | int | float):
        return value
    return _clean(str(value))


def _escape(value: Any) -> str:
    """A value for the human-readable log line: control characters escaped."""
    text = str(value)
    if text.isprintable():  # the common case, without a loop in Python
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _addresses(value: Any) -> list[str]:
    if isinstance(value, list | tuple):
        items = [str(v) for v in value]
    elif value:
        items = str(value).split(",")
    else:
        items = []
    return [a.strip().lower() for a in items if a.strip()]


def _size(value: Any) -> int:
    try:
        return max(0, int(value))
    except (TypeError, ValueError):
        return 0


class LineRate:
    """At most `per_second` lines a second (0: no limit).  `take(now)` ->
    (write this line?, lines suppressed since the last written one, to be
    reported now)."""

    def __init__(self, per_second: int):
        self.per_second = per_second
        self._second = -1
        self._used = 0
        self._suppressed = 0

    def take(self, now: float) -> tuple[bool, int]:
        second = int(now)
        if second != self._second:
            self._second, self._used = second, 0
        if self.per_second and self._used >= self.per_second:
            self._suppressed += 1
            return False, 0
        self._used += 1
        suppressed, self._suppressed = self._suppressed, 0
        return True, suppressed


@implementer(IAuditLog)
class AuditLog:
    def __init__(self, settings: Settings, clock: Callable[[], float] = time.time, *,
                 user_directory: Any = None):
        """user_directory: the IDirectory that classifies recipients (the
        daemon gives it here; start() may give it later)."""
        self.settings = settings
        self.directory = settings.path("log")
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self._clock = clock
        self._files: dict[str, tuple[str, int]] = {}  # kind -> (day, fd)
        self.user_directory: Any = user_directory  # IDirectory; classifies recipients
        self._pruner: task.LoopingCall | None = None
        self.run_in_thread: Callable[..., Any] | None = None  # deferToThread; tests run inline
        self._access_rate = LineRate(settings.log.access_lines_per_second)

    # -- lifecycle (the core service) ------------------------------------------------
    def start(self, reactor: Any = None, directory: Any = None) -> None:
        """Prune (and compact traffic) now and every [log] prune_interval."""
        if directory is not None:
            self.user_directory = directory
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        if self.run_in_thread is None:
            from twisted.internet.threads import deferToThreadPool

            def in_thread(fn: Callable[..., Any], *args: Any) -> Any:
                return deferToThreadPool(reactor, reactor.getThreadPool(), fn, *args)

            self.run_in_thread = in_thread
        self._pruner = task.LoopingCall(self._prune_in_thread)
        self._pruner.clock = reactor
        self._pruner.start(max(1, self.settings.log.prune_interval), now=True)

    def stop(self) -> None:
        if self._pruner is not None and self._pruner.running:
            self._pruner.stop()
        self._pruner = None
        self.close()

    def _prune_in_thread(self) -> Any:
        assert self.run_in_thread is not None
        d = self.run_in_thread(self.prune)
        # A failed run is logged; the timer keeps going.
        d.addErrback(lambda f: _log.failure("audit log pruning failed", f))
        return d

    def prune(self, now: float | None = None) -> tuple[list[str], list[str]]:
        """(traffic days compacted, files removed); file I/O: call in a thread."""
        return logfiles.maintain(self.directory, self.settings, self._clock() if now is None else now)

    # -- writing -------------------------------------------------------------------------
    def _fd(self, kind: str, day: str) -> int:
        current = self._files.get(kind)
        if current is not None and current[0] == day:
            return current[1]
        if current is not None:
            os.close(current[1])
            del self._files[kind]
        name = logfiles.day_file(kind, day)
        fd = os.open(os.path.join(self.directory, name),
                     os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
        self._files[kind] = (day, fd)
        self._link_current(kind, name)
        return fd

    def _link_current(self, kind: str, name: str) -> None:
        """Point KIND.log at the newest day file (another process may race
        us: both write the same link, and the later day wins below)."""
        link = os.path.join(self.directory, f"{kind}.log")
        try:
            if os.path.islink(link) and os.readlink(link) >= name:
                return
            if os.path.exists(link) and not os.path.islink(link):
                # A log from before day files: keep it under a day name.
                os.replace(link, os.path.join(self.directory, logfiles.day_file(
                    kind, logfiles.day_of(os.stat(link).st_mtime) + "-old")))
            tmp = f"{link}.{os.getpid()}.tmp"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(name, tmp)
            os.replace(tmp, link)
        except OSError as e:
            _log.warn("cannot update {link}: {error}", link=link, error=e)

    def _write(self, kind: str, records: list[dict[str, Any]]) -> None:
        if not records:
            return
        data = b"".join(
            # ASCII-only: U+2028/U+2029/U+0085 are line breaks to Unicode-aware
            # log readers, and a forged "second line" must be impossible.
            json.dumps(r, ensure_ascii=True, separators=(",", ":")).encode("ascii") + b"\n"
            for r in records)
        try:
            os.write(self._fd(kind, logfiles.day_of(records[0]["ts"])), data)
        except OSError as e:
            _log.error("cannot write audit log {kind}: {error}", kind=kind, error=e)

    def _append(self, kind: str, event: dict[str, Any], ts: float | None = None) -> None:
        record = {"ts": round(self._clock() if ts is None else ts, 3)}
        record.update({k: _clean(v) for k, v in event.items()})
        self._write(kind, [record])

    # -- IAuditLog ------------------------------------------------------------------------
    def login(self, account: str, protocol: str, client_ip: str, method: str, result: str) -> None:
        self._append("login", {"event": "login", "account": account, "protocol": protocol,
                               "ip": client_ip, "method": method, "result": result})
        metrics.login(protocol, result)
        _log.info("login {result} {account} via {protocol}/{method} from {ip}",
                  result=_escape(result), account=_escape(account), protocol=_escape(protocol),
                  method=_escape(method), ip=_escape(client_ip))

    def logout(self, account: str, protocol: str, client_ip: str) -> None:
        self._append("login", {"event": "logout", "account": account, "protocol": protocol,
                               "ip": client_ip})
        _log.info("logout {account} via {protocol} from {ip}", account=_escape(account),
                  protocol=_escape(protocol), ip=_escape(client_ip))

    def mail(self, event: str, **fields: Any) -> None:
        ts = self._clock()
        self._append("mail", {"event": event, **fields}, ts)
        local_count = 0
        if event == "received":
            local_count = self._traffic(ts, fields)
        metrics.mail_event(event, local_count, _size(fields.get("size")))
        if event in _AUDIT_ONLY_EVENTS:
            return
        _log.info("mail {event} {fields}", event=_escape(event),
                  fields=" ".join(f"{_escape(k)}={_escape(v)}" for k, v in sorted(fields.items())))

    # -- access log (the http listener) ----------------------------------------------------
    def access(self, **fields: Any) -> None:
        """One HTTP request (ip, method, path, status, size, agent); written
        at a bounded rate, never to the main log."""
        ts = self._clock()
        allowed, suppressed = self._access_rate.take(ts)
        if suppressed:
            self._append("access", {"event": "suppressed", "count": suppressed}, ts)
        if allowed:
            self._append("access", {"event": "request", **fields}, ts)

    # -- admin log (xmailctl) ------------------------------------------------------------
    def admin(self, operator: str, command: list[str] | str, result: str, **fields: Any) -> None:
        """A change made by `xmailctl`: who ran it (the login name behind
        sudo), the command line (secrets removed by the caller), the result."""
        if isinstance(command, list | tuple):
            command = " ".join(command)
        self._append("admin", {"event": "admin", "operator": operator, "command": command,
                               "result": result, **fields})

    # -- traffic ---------------------------------------------------------------------------
    def _is_local(self, address: str) -> bool:
        directory = self.user_directory
        if directory is None:
            return True
        try:
            return directory.resolve(address) is not None
        except Exception:
            return False

    def _canonical(self, address: str) -> str:
        directory = self.user_directory
        if directory is None:
            return address
        try:
            return directory.resolve(address) or address
        except Exception:
            return address

    def _traffic(self, ts: float, fields: dict[str, Any]) -> int:
        """Append the traffic lines of one accepted message; the number of
        local recipients."""
        size = _size(fields.get("size"))
        if "local_recipients" in fields or "remote_recipients" in fields:
            local = _addresses(fields.get("local_recipients"))
            remote = _addresses(fields.get("remote_recipients"))
        else:
            local, remote = [], []
            for address in _addresses(fields.get("recipients")):
                (local if self._is_local(address) else remote).append(address)
        local = list(dict.fromkeys(self._canonical(a) for a in local))
        sender = _clean(fields.get("user") or "")
        internal = fields.get("internal")
        if not isinstance(internal, bool):
            internal = bool(sender)
        stamp = round(ts, 3)
        records = [{"ts": stamp, "user": _clean(user), "dir": "in",
                    "scope": "internal" if internal else "external", "bytes": size}
                   for user in local]
        if sender:
            sender = str(sender).lower()
            if local:
                records.append({"ts": stamp, "user": sender, "dir": "out", "scope": "internal",
                                "bytes": size})
            if remote:
                records.append({"ts": stamp, "user": sender, "dir": "out", "scope": "external",
                                "bytes": size})
        self._write("traffic", records)
        return len(local)

    def close(self) -> None:
        for _day, fd in self._files.values():
            os.close(fd)
        self._files.clear()
