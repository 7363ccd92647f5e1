# -*- test-case-name: tests.workers.test_workers -*-
"""One worker process: `python -m xmail.workers.worker`, started by the
supervisor (xmail.workers.supervisor), never by hand.

It reads its bootstrap from stdin (a length-prefixed pickle: settings,
worker number, listener names and address families) and finds its
listening sockets as systemd socket activation passes them: LISTEN_FDS
descriptors from 3 on, LISTEN_PID = its own pid (set here, before Twisted's
endpoint module reads the environment).  Each listener's descriptions are
replaced by `systemd:domain=...:index=N`, so the ordinary XmailService runs
unchanged on top, constructed with the cross-process pieces of
xmail.workers.shared and the notification bus (xmail.workers.runtime);
it competes for the data directory's leader election (xmail.db.leader)
like a process on its own.

It dies with the supervisor (PR_SET_PDEATHSIG: SIGTERM, i.e. a drain), so a
supervisor killed with -9 leaves no worker holding the ports.
"""

from __future__ import annotations

import os

# Before any Twisted import: twisted.internet.endpoints reads these once.
# The supervisor set LISTEN_FDS and LISTEN_FDNAMES (the listener names).
os.environ["LISTEN_PID"] = str(os.getpid())

import ctypes  # noqa: E402
import dataclasses  # noqa: E402
import pickle  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from typing import Any  # noqa: E402

BOOT_HEADER = struct.Struct("<I")
LOG_FLUSH_SECONDS = 0.1
LOG_FLUSH_BYTES = 32768
PR_SET_PDEATHSIG = 1
START_FAILED = 3  # exit status of a worker that could not start serving
START_FAILED_PREFIX = "cannot start: "  # its last log line: this, then the reason


def read_bootstrap(stream: Any) -> dict[str, Any]:
    header = stream.read(BOOT_HEADER.size)
    if len(header) != BOOT_HEADER.size:
        raise SystemExit("xmail worker: no bootstrap on stdin (started by hand?)")
    (size,) = BOOT_HEADER.unpack(header)
    return pickle.loads(stream.read(size))


def encode_bootstrap(boot: dict[str, Any]) -> bytes:
    data = pickle.dumps(boot, protocol=pickle.HIGHEST_PROTOCOL)
    return BOOT_HEADER.pack(len(data)) + data


def die_with_parent(parent: int) -> None:
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent:  # it died before prctl
        os.kill(os.getpid(), signal.SIGTERM)


class BatchedLogStream:
    """The worker's log text on its way to the supervisor's pipe, written
    every LOG_FLUSH_SECONDS (or at LOG_FLUSH_BYTES) instead of per event.

    A busy worker logs a line per delivered message; one write per line cost
    the worker a system call and the supervisor a wake-up each.  The price:
    on kill -9 the last tenth of a second of lines is lost (the audit logs
    under data_dir/log are written by the worker itself, not through here).
    """

    def __init__(self, stream: Any):
        self._stream = stream
        self._pending: list[str] = []
        self._size = 0
        self._lock = threading.Lock()  # log events come from any thread

    def write(self, text: str) -> None:
        with self._lock:
            self._pending.append(text)
            self._size += len(text)
            full = self._size >= LOG_FLUSH_BYTES
        if full:
            self.drain()

    def flush(self) -> None:
        """FileLogObserver flushes after every event: the batching is the point."""

    def drain(self) -> None:
        with self._lock:
            if not self._pending:
                return
            text = "".join(self._pending)
            self._pending.clear()
            self._size = 0
            try:
                self._stream.write(text)
                self._stream.flush()
            except (OSError, ValueError):
                pass  # the supervisor is gone; PR_SET_PDEATHSIG ends us too


def worker_settings(settings: Any, listeners: list[tuple[str, str]]) -> Any:
    """settings with every listener on its inherited descriptors."""
    descriptions: dict[str, list[str]] = {}
    for index, (name, domain) in enumerate(listeners):
        descriptions.setdefault(name, []).append(f"systemd:domain={domain}:index={index}")
    listen = {f.name: tuple(descriptions.get(f.name, ())) for f in dataclasses.fields(settings.listen)}
    return dataclasses.replace(settings, listen=dataclasses.replace(settings.listen, **listen))


def main() -> None:
    boot = read_bootstrap(sys.stdin.buffer)
    die_with_parent(boot["parent"])
    os.umask(boot.get("umask", 0o077))

    from twisted.internet import reactor, task
    from twisted.internet.error import ReactorNotRunning
    from twisted.logger import FileLogObserver, Logger, eventAsText, globalLogBeginner

    log_stream = BatchedLogStream(sys.stderr)
    observer = FileLogObserver(log_stream, lambda event: (eventAsText(
        event, includeTimestamp=False, includeSystem=False) or "") + "\n")
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    task.LoopingCall(log_stream.drain).start(LOG_FLUSH_SECONDS, now=False)

    from xmail.daemon import stop_cleanly_on_sigterm
    from xmail.service import XmailService
    from xmail.workers import runtime

    # Twisted's own SIGTERM handler stops the reactor unconditionally: a
    # SIGTERM from the supervisor reaching a worker that is already
    # stopping (it could not start) logged a ReactorNotRunning traceback.
    stop_cleanly_on_sigterm(reactor)

    settings = worker_settings(boot["settings"], boot["listeners"])
    server = XmailService(settings, reactor, shared=runtime.worker_tables(settings, boot, reactor))

    failed = []

    def start() -> None:
        # A Ctrl-C in the terminal reaches the whole process group: the
        # supervisor decides, and sends SIGTERM.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            # As twistd would: privileged start (umask, switch interval, the
            # listeners adopt their descriptors), then start.
            server.privilegedStartService()
            server.startService()
            runtime.started(server, boot)
        except Exception as e:
            # A worker that cannot serve exits with START_FAILED and one
            # line saying why; the supervisor restarts it once, and stops
            # the daemon when the second start fails the same way.
            from xmail.preflight import StartupError, describe

            if not isinstance(e, StartupError | OSError):
                Logger().failure("worker {number} start failed", number=boot["number"])
            Logger().error("{prefix}{reason}", prefix=START_FAILED_PREFIX, reason=describe(e))
            failed.append(True)
            try:
                reactor.stop()
            except ReactorNotRunning:
                pass  # a SIGTERM from the supervisor stopped it first

    reactor.callWhenRunning(start)
    reactor.addSystemEventTrigger("before", "shutdown", server.stopService)
    reactor.run()
    log_stream.drain()
    sys.stderr.flush()
    if failed:
        sys.exit(START_FAILED)


if __name__ == "__main__":
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 5000))
    main()
