# -*- test-case-name: tests.workers.test_supervisor -*-
"""Unit tests of the supervisor's pieces that need no worker: how many
workers, binding a listener once per worker, who can start a worker."""

from __future__ import annotations

import dataclasses
import os
import pwd
import socket
import sys
from typing import Any

import pytest

from tests.conftest import reactor_running
from xmail.config import Settings
from xmail.preflight import StartupError
from xmail.service import XmailService
from xmail.workers.supervisor import (
    WorkerSupervisor,
    bind_listener,
    make_daemon_service,
    startable_by,
    worker_count,
)


def with_workers(n: int) -> Settings:
    settings = Settings()
    return dataclasses.replace(settings, server=dataclasses.replace(settings.server, workers=n))


def test_worker_count_defaults_to_the_cores() -> None:
    assert Settings().server.workers == 0
    assert worker_count(with_workers(0)) == (os.cpu_count() or 1)
    assert worker_count(with_workers(1)) == 1
    assert worker_count(with_workers(3)) == 3


def test_daemon_service_is_the_supervisor_only_with_several_workers(tmp_path: Any) -> None:
    def settings(n: int) -> Settings:
        s = with_workers(n)
        return dataclasses.replace(s, server=dataclasses.replace(s.server, data_dir=str(tmp_path)))

    assert isinstance(make_daemon_service(settings(1)), XmailService)
    supervisor = make_daemon_service(settings(2))
    assert isinstance(supervisor, WorkerSupervisor) and supervisor.workers == 2


def test_a_tcp_listener_is_one_listening_socket_for_every_worker() -> None:
    listener = bind_listener(reactor_running(), "imap", "tcp:0:interface=127.0.0.1")
    try:
        assert listener.domain == "INET" and listener.socket is not None
        port = listener.socket.getsockname()[1]
        assert port != 0
        # No SO_REUSEPORT: a second server cannot silently share the port
        # and take half of the connections.
        assert not listener.socket.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
        with pytest.raises(OSError):
            bind_listener(reactor_running(), "imap", f"tcp:{port}:interface=127.0.0.1")
        client = socket.create_connection(("127.0.0.1", port))
        conn, _ = listener.socket.accept()
        conn.close()
        client.close()
    finally:
        listener.close()
    assert listener.socket is None


def test_a_listener_workers_cannot_share_is_refused() -> None:
    with pytest.raises(StartupError, match="cannot be shared"):
        bind_listener(reactor_running(), "http", "unix:/tmp/xmail-test-never.sock")


def test_who_can_start_a_worker() -> None:
    assert startable_by(None, None) is None  # no --uid: we are who we are
    assert startable_by(0, 0) is None
    nobody = pwd.getpwnam("nobody")
    unreachable = startable_by(nobody.pw_uid, nobody.pw_gid)
    python_dirs = []
    path = os.path.dirname(os.path.realpath(sys.executable))
    while path != os.path.dirname(path):
        python_dirs.append(path)
        path = os.path.dirname(path)
    closed = [d for d in python_dirs if os.stat(d).st_mode & 0o001 == 0]  # deepest first
    if closed:  # e.g. Python under /root (0700), as on the test machine
        assert unreachable == closed[0]
    else:
        assert unreachable is None or os.stat(unreachable).st_mode & 0o005 != 0o005


def test_every_listener_has_a_protocol() -> None:
    from xmail.config import LISTENERS
    from xmail.service import PROTOCOLS

    assert set(PROTOCOLS) == set(LISTENERS)


def test_the_supervisor_does_not_load_what_only_workers_serve() -> None:
    """The multi-worker supervisor binds, forks and watches: the protocols,
    the store and the auth stack stay out of its memory (issue 15, memory)."""
    import subprocess

    code = ("import sys, xmail.workers.supervisor, xmail.daemon\n"
            "print(sorted(m for m in sys.modules if m == 'xmail.service' or m.startswith("
            "('xmail.protocols', 'xmail.store', 'xmail.auth.portal', 'xmail.queue.runner'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    assert out.strip() == "[]"
