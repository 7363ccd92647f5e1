# -*- test-case-name: tests.test_context -*-
"""The server context is built once and never assigned into (issue 14):
the core services arrive through the holder the service fills, workers'
tables and bus at construction; one leader election; the store does not
import the workers."""

from __future__ import annotations

import ast
import dataclasses
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import in_reactor, reactor_running
from tests.workers.daemon import wait_for
from xmail.config import Settings
from xmail.context import CoreServices, ServerContext, SharedTables
from xmail.db.leader import LEADER_LOCK, leader_pid
from xmail.workers.bus import NotifyBus

XMAIL = Path(__file__).resolve().parent.parent / "xmail"


def test_server_context_is_frozen() -> None:
    ctx = ServerContext(settings=Settings(), reactor=None)
    for name in ("settings", "tls", "send_counter", "connections", "bound_ports", "core"):
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(ctx, name, object())
    # The core services are read-only views of the holder.
    for name in ("store", "directory", "portal", "audit", "queue"):
        with pytest.raises((TypeError, AttributeError)):
            setattr(ctx, name, object())
    with pytest.raises((TypeError, AttributeError)):
        ctx.anything_new = 1  # slots: no attribute can be added either
    assert not hasattr(ctx, "__dict__")
    assert dataclasses.fields(SharedTables) and SharedTables.__dataclass_params__.frozen


def test_core_services_reach_the_context_through_the_holder(make_server: Any) -> None:
    server = make_server()
    ctx = server.ctx
    core = server.service.core
    assert isinstance(ctx.core, CoreServices)
    assert ctx.store is ctx.core.store is not None
    assert ctx.directory is ctx.core.directory is not None
    assert ctx.portal is ctx.core.portal is not None
    assert ctx.queue is ctx.core.queue is not None
    assert ctx.audit is ctx.core.audit is not None
    assert ctx.tls is not None and ctx.tls.loads == 1
    # Every listener's factory holds this very context.
    for listener in server.service.listeners.values():
        assert listener.ctx is ctx
    assert core.ctx is ctx
    # Listeners publish their real ports into the dict the context holds.
    assert ctx.bound_ports == {name: server.port(name) for name in server.service.listeners}


def test_one_send_counter_for_every_submission_listener(make_server: Any) -> None:
    server = make_server()
    agents = [listener.factory.agent for name, listener in server.service.listeners.items()
              if name in ("submission", "submissions")]
    assert len(agents) == 2
    assert agents[0].send_counter is agents[1].send_counter is server.ctx.send_counter
    assert server.ctx.send_counter is not None


def test_a_process_on_its_own_wins_the_one_election(make_server: Any) -> None:
    server = make_server()
    lock = server.settings.path("run", LEADER_LOCK)
    assert leader_pid(lock) == os.getpid()
    assert server.service.core.singletons and server.service.core.leader.leading
    # The queue runner has no election of its own any more.
    assert not os.path.exists(server.settings.path("queue", ".runner.lock"))


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_the_store_does_not_import_the_workers() -> None:
    offenders = {str(path.relative_to(XMAIL.parent)): sorted(n for n in _imports(path)
                                                              if n.startswith("xmail.workers"))
                 for path in (XMAIL / "store").rglob("*.py")}
    assert {k: v for k, v in offenders.items() if v} == {}
    # Nor at run time, through anything it imports.
    code = "import sys, xmail.store.mailstore; print(any(m.startswith('xmail.workers') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_bus_dispatches_datagrams_by_kind(tmp_path: Any) -> None:
    reactor = reactor_running()
    directory = str(tmp_path / "notify")
    sender, receiver = NotifyBus(directory, reactor), NotifyBus(directory, reactor)
    got: list[bytes] = []
    receiver.register(b"Q", got.append)
    with pytest.raises(ValueError):
        receiver.register(b"QQ", got.append)
    for bus in (sender, receiver):
        in_reactor(bus.open)
    try:
        in_reactor(sender.broadcast, b"Z", b"nobody listens")  # unknown kind: ignored
        in_reactor(sender.broadcast, b"Q", b"kick")
        wait_for(lambda: got, timeout=5, what="the queue kick")
        assert got == [b"kick"]
    finally:
        for bus in (sender, receiver):
            in_reactor(bus.close)
