# -*- test-case-name: tests.workers.test_workers -*-
"""The twistd process with `[server] workers` > 1: binds, starts, watches.

- privilegedStartService (as root under `twistd --uid`): binds every
  listener description to one socket that all workers accept on; each
  worker accepts only while it holds no more than its share of the open
  connections (xmail.workers.balance), so long sessions spread evenly
  over the workers, and connections that arrive while a worker restarts
  go to the others.  A `systemd:` description (socket activation) is the
  socket systemd passed.
- startService: fresh shared tables under data_dir/run/, then N workers
  (xmail.workers.worker) with the sockets as descriptors 3, 4, ...
- A worker that exits while the server runs is restarted, with a log line
  (after a growing pause if it keeps dying young); its connection counts
  are cleared first -- the kernel closed its connections.
- SIGHUP is forwarded to every worker (each reloads its TLS files);
  stopService sends SIGTERM to all and waits for them to drain, SIGKILL
  after DRAIN_TIMEOUT.  A worker's log lines come through its stderr and
  are logged here with its number.
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import socket
import sys
import threading
from typing import Any

from twisted.application import service
from twisted.internet import defer, endpoints, protocol
from twisted.logger import Logger

from xmail import metrics
from xmail.config import LISTENERS, Settings
from xmail.daemon import StartupGuard, exit_with_status, stop_cleanly_on_sigterm, stop_with_error
from xmail.preflight import StartupError, bind_error, preflight
from xmail.workers import shared
from xmail.workers.worker import START_FAILED, START_FAILED_PREFIX, encode_bootstrap

DRAIN_TIMEOUT = 60.0  # seconds a worker may take to finish its sessions
YOUNG = 10.0  # a worker dying sooner than this after its start is restarted later and later
MAX_RESTART_DELAY = 30.0
MAX_LOG_LINE = 8192


def worker_count(settings: Settings) -> int:
    """[server] workers, 0 meaning the number of cores."""
    return settings.server.workers or os.cpu_count() or 1


def _allowed(st: os.stat_result, uid: int, gid: int, bits: int) -> bool:
    """May uid:gid use a file with these mode bits (4 r, 1 x)?"""
    if uid == 0:
        return True
    if st.st_uid == uid:
        return st.st_mode >> 6 & bits == bits
    if st.st_gid == gid:
        return st.st_mode >> 3 & bits == bits
    return st.st_mode & bits == bits


def startable_by(uid: int | None, gid: int | None) -> str | None:
    """None if a worker can be started after `twistd --uid/--gid` dropped
    privileges: the service user must be able to run the interpreter and
    read xmail and Twisted.  Else what it cannot reach."""
    if uid is None:
        return None
    import twisted
    import xmail

    uid = int(uid)
    gid = int(gid) if gid is not None else -1
    targets = [(os.path.realpath(sys.executable), 1)]
    targets += [(os.path.dirname(os.path.realpath(m.__file__)), 5) for m in (xmail, twisted)]
    for path, bits in targets:
        parent = os.path.dirname(path)
        while True:
            if not _allowed(os.stat(parent), uid, gid, 1):
                return parent
            if parent == os.path.dirname(parent):
                break
            parent = os.path.dirname(parent)
        if not _allowed(os.stat(path), uid, gid, bits):
            return path
    return None


def make_daemon_service(settings: Settings, uid: int | None = None, gid: int | None = None) -> Any:
    """What `twistd xmail` (and a tac file) runs: the supervisor when
    [server] workers resolves to more than one, else the one-process
    XmailService.  uid/gid: twistd's --uid/--gid, when given."""
    workers = worker_count(settings)
    if workers > 1:
        unreachable = startable_by(uid, gid)
        if unreachable is None:
            # This process binds and supervises; the workers serve.
            return WorkerSupervisor(settings, workers)
        # Workers start after twistd dropped privileges: the service user
        # must be able to run Python.
        Logger().error("[server] workers = {workers}: the service user cannot reach {path}; "
                       "running one process", workers=workers, path=unreachable)
    # One process serves everything: only now the protocols, the store and
    # the auth stack are imported (a supervisor never needs them).
    from xmail.service import makeService

    return makeService(settings)


def twistd_service(settings: Settings, uid: int | None = None, gid: int | None = None) -> Any:
    """The service the `twistd xmail` plugin and tac/xmail.tac run: the
    operator's faults checked first (one line, exit 1: SystemExit), SIGTERM
    a clean stop, then make_daemon_service under a StartupGuard."""
    try:
        preflight(settings)
    except StartupError as e:
        raise SystemExit(f"xmail: {e}") from None
    atexit.register(exit_with_status)
    stop_cleanly_on_sigterm()
    return StartupGuard(make_daemon_service(settings, uid, gid))


class BoundListener:
    """One listener description, bound: the socket every worker accepts on."""

    def __init__(self, name: str, description: str, domain: str, sock: socket.socket):
        self.name = name
        self.description = description
        self.domain = domain  # "INET", "INET6" (systemd endpoint's domain=)
        self.socket: socket.socket | None = sock

    def fileno(self) -> int:
        assert self.socket is not None, f"listener {self.name} is closed"
        return self.socket.fileno()

    def close(self) -> None:
        if self.socket is not None:
            self.socket.close()
            self.socket = None


def bind_listener(reactor: Any, name: str, description: str) -> BoundListener:
    endpoint = endpoints.serverFromString(reactor, description)
    if isinstance(endpoint, endpoints.TCP4ServerEndpoint | endpoints.TCP6ServerEndpoint):
        family = socket.AF_INET6 if isinstance(endpoint, endpoints.TCP6ServerEndpoint) else socket.AF_INET
        interface = endpoint._interface or ("::" if family == socket.AF_INET6 else "0.0.0.0")
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((interface, endpoint._port))
            sock.listen(endpoint._backlog)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return BoundListener(name, description, "INET6" if family == socket.AF_INET6 else "INET", sock)
    if isinstance(endpoint, endpoints.AdoptedStreamServerEndpoint):
        sock = socket.socket(fileno=os.dup(endpoint.fileno))
        domain = {socket.AF_INET: "INET", socket.AF_INET6: "INET6", socket.AF_UNIX: "UNIX"}[sock.family]
        return BoundListener(name, description, domain, sock)
    raise StartupError(f"listener {name}: {description!r} cannot be shared by workers "
                       "(use tcp:, tcp6: or systemd: descriptions, or [server] workers = 1)")


class WorkerProcess(protocol.ProcessProtocol):
    """One running worker: relays its log lines, reports its end."""

    _log = Logger()

    def __init__(self, supervisor: WorkerSupervisor, number: int):
        self.supervisor = supervisor
        self.number = number
        self.pid: int | None = None
        self.started = 0.0
        self.ended: defer.Deferred[None] = defer.Deferred()
        self._partial = {1: b"", 2: b""}
        self.start_failure: str | None = None  # why it could not start, as it said

    def connectionMade(self) -> None:
        self.pid = self.transport.pid
        self.started = self.supervisor.reactor.seconds()

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        buffered = self._partial.get(childFD, b"") + data
        *lines, rest = buffered.split(b"\n")
        if len(rest) > MAX_LOG_LINE:
            lines.append(rest)
            rest = b""
        self._partial[childFD] = rest
        for line in lines:
            self._emit(line)

    def _emit(self, line: bytes) -> None:
        text = line.decode("utf-8", "backslashreplace").rstrip("\r")
        if text.startswith(START_FAILED_PREFIX):
            self.start_failure = text[len(START_FAILED_PREFIX):]
        if text:
            self._log.info("worker {number}: {line}", number=self.number, line=text)

    def processEnded(self, reason: Any) -> None:
        for fd in (1, 2):
            if self._partial.get(fd):
                self._emit(self._partial[fd])
                self._partial[fd] = b""
        self.supervisor.worker_ended(self, reason)
        self.ended.callback(None)


class WorkerSupervisor(service.Service):
    """The service `twistd xmail` runs when [server] workers > 1."""

    _log = Logger()

    def __init__(self, settings: Settings, workers: int, reactor: Any = None):
        if reactor is None:
            from twisted.internet import reactor as default_reactor

            reactor = default_reactor
        self.settings = settings
        self.workers = workers
        self.reactor = reactor
        self.listeners: list[BoundListener] = []
        self.processes: dict[int, WorkerProcess] = {}
        self.restarts = 0
        self._failures: dict[int, int] = {}  # worker number -> young deaths in a row
        self._start_failures: dict[int, str | None] = {}  # worker number -> last start fault
        self._failed = False  # stopping the daemon for a worker that cannot start
        self._pending: dict[int, Any] = {}  # worker number -> delayed restart
        self._previous_sighup: Any = None
        self._umask = 0o077

    @property
    def run_dir(self) -> str:
        return self.settings.path("run")

    @property
    def metrics_dir(self) -> str:
        """The workers' Prometheus values, summed by /metrics (xmail.metrics)."""
        return os.path.join(self.run_dir, "metrics")

    # -- binding ------------------------------------------------------------------------------
    def privilegedStartService(self) -> None:
        # As XmailService does: files the workers create are the service
        # user's alone; they inherit this umask.
        os.umask(os.umask(0o077) | 0o077)
        self._bind()
        service.Service.privilegedStartService(self)

    def _bind(self) -> None:
        if self.listeners:
            return
        try:
            for name in LISTENERS:
                for description in getattr(self.settings.listen, name):
                    try:
                        listener = bind_listener(self.reactor, name, description)
                    except StartupError:
                        raise
                    except OSError as e:
                        raise StartupError(bind_error(name, description, e)) from None
                    except (ValueError, TypeError, KeyError, IndexError) as e:
                        raise StartupError(f"listener {name}: cannot use {description!r}: {e}") from None
                    self.listeners.append(listener)
                    self._log.info("{name} bound on {address} for {workers} workers", name=name,
                                   address=listener.socket.getsockname(), workers=self.workers)
        except BaseException:
            self._close_listeners()
            raise

    def _close_listeners(self) -> None:
        for listener in self.listeners:
            listener.close()
        self.listeners = []

    def port(self, name: str) -> int:
        """The first bound TCP port of a listener (tests use port 0)."""
        for listener in self.listeners:
            if listener.name == name and listener.socket is not None:
                return listener.socket.getsockname()[1]
        raise KeyError(name)

    # -- running ------------------------------------------------------------------------------
    def startService(self) -> None:
        self._bind()
        service.Service.startService(self)
        self._umask = os.umask(0o077)
        os.umask(self._umask)
        os.makedirs(self.settings.data_dir, mode=0o700, exist_ok=True)
        os.makedirs(self.run_dir, mode=0o700, exist_ok=True)
        shared.create_files(self.run_dir, self.workers)
        metrics.prepare_shared_dir(self.metrics_dir)
        for number in range(self.workers):
            self._spawn(number)
        if threading.current_thread() is threading.main_thread() and hasattr(signal, "SIGHUP"):
            self._previous_sighup = signal.signal(signal.SIGHUP, self._on_sighup)
        self._log.info("xmail supervisor (pid {pid}) started {workers} workers", pid=os.getpid(),
                       workers=self.workers)

    def _spawn(self, number: int) -> None:
        self._pending.pop(number, None)
        child_fds: dict[int, Any] = {0: "w", 1: "r", 2: "r"}
        names = []
        for index, listener in enumerate(self.listeners):
            child_fds[3 + index] = listener.fileno()
            names.append((listener.name, listener.domain))
        env = {k: v for k, v in os.environ.items() if k not in ("LISTEN_PID", "LISTEN_FDNAMES")}
        env["LISTEN_FDS"] = str(len(self.listeners))
        env["LISTEN_FDNAMES"] = ":".join(name for name, _domain in names)
        env["XMAIL_WORKER"] = str(number)
        env[metrics.MULTIPROCESS_ENV] = self.metrics_dir
        process = WorkerProcess(self, number)
        self.reactor.spawnProcess(process, sys.executable, [sys.executable, "-m", "xmail.workers.worker"],
                                  env=env, path=os.getcwd(), childFDs=child_fds)
        process.transport.write(encode_bootstrap({
            "settings": self.settings, "number": number, "workers": self.workers,
            "listeners": names, "parent": os.getpid(), "umask": self._umask,
        }))
        self.processes[number] = process
        self._log.info("worker {number} started (pid {pid})", number=number, pid=process.pid)
        self._write_pids()

    def _write_pids(self) -> None:
        """data_dir/run/workers.json: who is who, for operators and tests."""
        path = os.path.join(self.run_dir, "workers.json")
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump({"supervisor": os.getpid(),
                       "workers": {str(n): p.pid for n, p in sorted(self.processes.items())}}, f)
        os.replace(tmp, path)

    def worker_ended(self, process: WorkerProcess, reason: Any) -> None:
        if self.processes.get(process.number) is process:
            del self.processes[process.number]
        if process.pid is not None:
            metrics.worker_gone(self.metrics_dir, process.pid)
        exit_code = getattr(reason.value, "exitCode", None)  # not .status: the raw wait status
        signal_number = getattr(reason.value, "signal", None)
        how = f"killed by signal {signal_number}" if signal_number else f"exit status {exit_code}"
        if not self.running or self._failed:
            self._log.info("worker {number} (pid {pid}) stopped ({how})", number=process.number,
                           pid=process.pid, how=how)
            return
        fault = process.start_failure if exit_code == START_FAILED else None
        if fault is not None and self._start_failures.get(process.number) == fault:
            # The same fault twice: a restart will not cure it (issue 16).
            self._start_failures.pop(process.number, None)
            self._failed = True  # one line, even if the other workers fail the same way meanwhile
            stop_with_error(f"worker {process.number} cannot start: {fault}", self.reactor)
            return
        self._start_failures[process.number] = fault
        lived = self.reactor.seconds() - process.started
        failures = self._failures.get(process.number, 0) + 1 if lived < YOUNG else 0
        self._failures[process.number] = failures
        delay = min(MAX_RESTART_DELAY, 0.5 * 2 ** (failures - 1)) if failures else 0.0
        self._log.warn("worker {number} (pid {pid}) died ({how}) after {lived:.1f} s; "
                       "restarting it in {delay:.1f} s", number=process.number, pid=process.pid,
                       how=how, lived=lived, delay=delay)
        try:
            shared.clear_worker_row(self.run_dir, process.number)
        except OSError as e:
            self._log.warn("cannot clear worker {number}'s counts: {error}", number=process.number, error=e)
        self.restarts += 1
        self._pending[process.number] = self.reactor.callLater(delay, self._spawn, process.number)

    # -- signals ------------------------------------------------------------------------------
    def _on_sighup(self, signum: int, frame: Any) -> None:
        self.reactor.callFromThread(self.signal_workers, "HUP")

    def signal_workers(self, name: str) -> None:
        """Send every live worker a signal ("HUP", "TERM", "KILL")."""
        for process in list(self.processes.values()):
            try:
                process.transport.signalProcess(name)
            except Exception as e:  # ProcessExitedAlready, OSError
                self._log.debug("signal {name} to worker {number}: {error}", name=name,
                                number=process.number, error=e)

    def stopService(self) -> Any:
        service.Service.stopService(self)
        if self._previous_sighup is not None:
            signal.signal(signal.SIGHUP, self._previous_sighup)
            self._previous_sighup = None
        for call in self._pending.values():
            if call.active():
                call.cancel()
        self._pending.clear()
        ended = [p.ended for p in self.processes.values()]
        self.signal_workers("TERM")
        kill = self.reactor.callLater(DRAIN_TIMEOUT, self.signal_workers, "KILL")

        def done(_: Any) -> None:
            if kill.active():
                kill.cancel()
            self._close_listeners()
            self._log.info("all workers stopped")

        return defer.gatherResults(ended).addCallback(done)
