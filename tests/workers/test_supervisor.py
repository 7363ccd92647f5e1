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


def test_a_tcp_listener_is_one_socket_per_worker_on_one_port() -> None:
    listener = bind_listener(reactor_running(), "imap", "tcp:0:interface=127.0.0.1", 3)
    try:
        ports = {s.getsockname() for s in listener.sockets}
        assert len(listener.sockets) == 3 and len(ports) == 1 and listener.domain == "INET"
        assert listener.for_worker(4) is listener.sockets[1]
        # Each socket accepts on its own: the kernel spreads the connections.
        port = listener.sockets[0].getsockname()[1]
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(30)]
        accepted = 0
        for sock in listener.sockets:
            sock.setblocking(False)
            while True:
                try:
                    conn, _ = sock.accept()
                except BlockingIOError:
                    break
                conn.close()
                accepted += 1
        assert accepted == 30
        for client in clients:
            client.close()
    finally:
        listener.close()


def test_a_listener_workers_cannot_share_is_refused() -> None:
    with pytest.raises(ValueError, match="cannot be shared"):
        bind_listener(reactor_running(), "http", "unix:/tmp/xmail-test-never.sock", 2)


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
