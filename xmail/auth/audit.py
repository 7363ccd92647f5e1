# -*- test-case-name: tests.auth.test_audit -*-
"""Login and mail events: JSON lines under data_dir/log and twisted.logger.

Each event is one ``os.write`` of one line to a file opened with O_APPEND:
the kernel appends it whole even when several worker processes share the
file, and the write lands in the page cache (no fsync), so the reactor never
waits on the disk for long.  Values are JSON strings, so CR and LF arrive
escaped and a client cannot forge a log line with a crafted user name.
Issue #8 adds rotation and queries.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any

from twisted.logger import Logger
from zope.interface import implementer

from xmail.auth.interfaces import IAuditLog
from xmail.config import Settings

MAX_VALUE = 512  # characters kept of one value

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
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


@implementer(IAuditLog)
class AuditLog:
    def __init__(self, settings: Settings, clock: Any = time.time):
        self.directory = settings.path("log")
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self._clock = clock
        self._fds: dict[str, int] = {}

    def _fd(self, name: str) -> int:
        fd = self._fds.get(name)
        if fd is None:
            path = os.path.join(self.directory, name)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
            self._fds[name] = fd
        return fd

    def _append(self, name: str, event: dict[str, Any]) -> None:
        record = {"ts": round(self._clock(), 3)}
        record.update({k: _clean(v) for k, v in event.items()})
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n"
        try:
            os.write(self._fd(name), line.encode("utf-8"))
        except OSError as e:
            _log.error("cannot write audit log {name}: {error}", name=name, error=e)

    def login(self, account: str, protocol: str, client_ip: str, method: str, result: str) -> None:
        self._append("login.log", {"event": "login", "account": account, "protocol": protocol,
                                   "ip": client_ip, "method": method, "result": result})
        _log.info("login {result} {account} via {protocol}/{method} from {ip}",
                       result=_escape(result), account=_escape(account), protocol=_escape(protocol),
                       method=_escape(method), ip=_escape(client_ip))

    def logout(self, account: str, protocol: str, client_ip: str) -> None:
        self._append("login.log", {"event": "logout", "account": account, "protocol": protocol,
                                   "ip": client_ip})
        _log.info("logout {account} via {protocol} from {ip}", account=_escape(account),
                       protocol=_escape(protocol), ip=_escape(client_ip))

    def mail(self, event: str, **fields: Any) -> None:
        self._append("mail.log", {"event": event, **fields})
        _log.info("mail {event} {fields}", event=_escape(event),
                       fields=" ".join(f"{_escape(k)}={_escape(v)}" for k, v in sorted(fields.items())))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()
