# -*- test-case-name: tests.workers.test_balance -*-
"""Unit tests of the workers' connection shares (xmail.workers.balance):
two ConnectionShare instances on one load file stand for two workers, a
task.Clock for the reactor and the shared monotonic clock, and a real
listening socket behind a SharedPort."""

from __future__ import annotations

import os
import socket
from typing import Any

import pytest
from twisted.internet import protocol, task

from tests.conftest import in_reactor, reactor_running, wait_until
from xmail.metrics import count_connections
from xmail.workers import balance, shared


class Clock(task.Clock):
    """The reactor's timers and the shared monotonic clock in one."""

    def __call__(self) -> float:
        return self.seconds()


@pytest.fixture
def clock() -> Clock:
    c = Clock()
    c.advance(1000.0)  # a monotonic clock is never near 0
    return c


@pytest.fixture
def pair(tmp_path: Any, clock: Clock) -> tuple[balance.ConnectionShare, balance.ConnectionShare]:
    shared.create_files(str(tmp_path), 2)
    path = str(tmp_path / shared.WORKER_LOAD)
    a = balance.ConnectionShare(path, 0, clock, clock)
    b = balance.ConnectionShare(path, 1, clock, clock)
    a.start()
    b.start()
    return a, b


class FakePort:
    def __init__(self) -> None:
        self.reading = True
        self.disconnecting = False

    def stopReading(self) -> None:
        self.reading = False

    def startReading(self) -> None:
        self.reading = True


def test_a_worker_ahead_of_the_others_stops_accepting_until_they_catch_up(pair: Any, clock: Clock) -> None:
    a, b = pair
    port = FakePort()
    a.ports.add(port)
    assert a.headroom() == 1
    a.opened()
    # One ahead of an empty worker: the next connection is the other's.
    assert a.paused and not port.reading and a.headroom() == 0
    clock.advance(balance.RECHECK)
    assert a.paused
    b.opened()
    clock.advance(balance.RECHECK)
    assert not a.paused and port.reading and a.headroom() == 1
    b.opened()
    assert b.paused and b.headroom() == 0
    # A closed connection makes room at once, without waiting for a look.
    b.closed()
    assert not b.paused


def test_the_least_loaded_worker_always_accepts(pair: Any, clock: Clock) -> None:
    a, b = pair
    for _ in range(50):
        (a if a.headroom() > 0 else b).opened()
        clock.advance(balance.RECHECK)
        assert not (a.paused and b.paused)
        assert abs(a.open - b.open) <= 1 + min(a.open, b.open) // 32
    assert a.open + b.open == 50


def test_a_silent_or_cleared_worker_is_not_waited_for(tmp_path: Any, pair: Any, clock: Clock) -> None:
    a, b = pair
    for _ in range(5):
        a.opened()
    assert a.paused
    # b hangs: its slot gets no heartbeat for longer than STALE.
    b._beat.cancel()
    b._beat = None
    clock.advance(balance.STALE + 1.0)
    assert a.headroom() > 0 and not a.paused
    # A dead worker's slot cleared by the supervisor: absent, not "0 open".
    b.start()
    assert a.headroom() <= 0
    shared.clear_worker_row(str(tmp_path), 1)
    assert a.headroom() > 0


def test_a_worker_counts_for_the_others_only_once_it_listens(tmp_path: Any, clock: Clock) -> None:
    """A restarted worker's slot stays absent until start() (its listeners
    are up): the survivors keep taking every connection meanwhile."""
    shared.create_files(str(tmp_path), 2)
    path = str(tmp_path / shared.WORKER_LOAD)
    survivor = balance.ConnectionShare(path, 0, clock, clock)
    survivor.start()
    restarting = balance.ConnectionShare(path, 1, clock, clock)
    for _ in range(10):
        survivor.opened()
    assert not survivor.paused
    restarting.start()
    assert survivor.headroom() <= 0
    survivor.opened()
    assert survivor.paused


def test_a_draining_worker_leaves_the_others_free(pair: Any, clock: Clock) -> None:
    a, b = pair
    a.opened()
    a.opened()
    assert a.paused
    b.opened()
    b.stop()
    clock.advance(balance.RECHECK)
    assert not a.paused and a.headroom() > 0
    # Its sessions closing one by one do not make it a worker to wait for.
    b.closed()
    a.opened()
    a.opened()
    assert not a.paused
    assert not clock.getDelayedCalls() or all(
        call.func.__self__ is a for call in clock.getDelayedCalls())


def test_slack_grows_slowly_with_the_counts() -> None:
    assert [balance.slack(n) for n in (0, 1, 31, 32, 320, 10_000)] == [1, 1, 1, 2, 11, 313]


def test_a_shared_port_accepts_at_most_its_headroom_per_wake_up(tmp_path: Any) -> None:
    """A real listening socket, a real reactor: a burst of connections in
    the backlog is not swallowed by one worker's accept loop."""
    reactor = reactor_running()
    shared.create_files(str(tmp_path), 2)
    path = str(tmp_path / shared.WORKER_LOAD)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(50)
    address = listener.getsockname()
    connected: list[Any] = []

    class Count(protocol.Protocol):
        def connectionMade(self) -> None:
            connected.append(self)

    factory = protocol.Factory.forProtocol(Count)
    share = balance.ConnectionShare(path, 0, reactor)
    other = balance.ConnectionShare(path, 1, reactor)
    counting = count_connections(factory, "test", share)
    clients: list[socket.socket] = []
    try:
        # What share.endpoint makes of an inherited (systemd:) TCP socket.
        endpoint = balance.SharedSocketEndpoint(reactor, _dup(listener), socket.AF_INET, share)
        in_reactor(lambda: (share.start(), other.start()))
        port = in_reactor(endpoint.listen, counting)
        # Six queued connections: the other worker holds 2, so this one may
        # take 3 (2 + slack 1) and then stops reading.
        in_reactor(lambda: (other.opened(), other.opened()))
        clients = [socket.create_connection(address) for _ in range(6)]
        wait_until(lambda: len(connected) >= 3, timeout=5)
        in_reactor(lambda: None)
        assert len(connected) == 3 and share.paused
        in_reactor(lambda: (other.opened(), other.opened(), other.opened()))
        wait_until(lambda: len(connected) == 6, timeout=5)
        assert share.open == 6
        in_reactor(port.stopListening)
        assert port not in share.ports
    finally:
        for c in clients:
            c.close()
        listener.close()
        in_reactor(lambda: (share.stop(), other.stop()))


def _dup(sock: socket.socket) -> int:
    return os.dup(sock.fileno())
