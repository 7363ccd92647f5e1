# -*- test-case-name: tests.workers.test_balance -*-
"""Keeping the workers' shares of the open connections even.

Every worker accepts on the same listening sockets (one per listener, bound
by the supervisor).  Left alone, which worker takes a connection is luck:
the kernel's SO_REUSEPORT hash is even only on average (it split the 16
long sessions of bench/workers_bench.py about 12/4 in one measured run),
and with one shared socket the worker that wakes first takes a whole
burst.  Mail connections live long -- an IMAP client stays for hours, a
sending SMTP client for thousands of messages -- so an uneven split leaves
one core busy and the other idle for as long.

So each worker publishes its number of open connections (all listeners) in
a slot of data_dir/run/worker-load.shm (created, and cleared for a dead
worker, by the supervisor with the other shared tables), and a worker that
holds more than the least loaded live worker plus a small slack stops
accepting (its listening ports stop reading) until the others catch up or
its own connections close; it accepts at most its headroom per wake-up.
The least loaded worker always accepts, so a connection never waits for a
paused one.  A worker whose slot has not been refreshed for STALE seconds
(hung, or dead and not yet cleared by the supervisor) is not waited for.
This is nginx's accept_mutex idea with the counts in shared memory instead
of a lock.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from typing import Any

from twisted.internet import defer, fdesc, tcp
from twisted.internet.endpoints import AdoptedStreamServerEndpoint, serverFromString
from twisted.internet.interfaces import IStreamServerEndpoint
from zope.interface import implementer

from xmail.workers import shared

_SLOT = shared.LOAD_SLOT  # open connections, heartbeat (time.monotonic: one clock for all processes)
HEARTBEAT = 0.5  # seconds between a worker's refreshes of its slot
STALE = 3.0  # a slot older than this is a worker not to wait for
RECHECK = 0.02  # seconds between looks at the others while paused
MAX_BURST = 64  # connections accepted in one wake-up at most


def slack(least: int) -> int:
    """How many connections a worker may hold above the least loaded one:
    one, and ~3% more on big counts so that 10,000 IDLE sessions do not
    pause and resume accepting on every connection."""
    return 1 + least // 32


class ConnectionShare:
    """This worker's slot in the load file, and the gate on its ports."""

    def __init__(self, path: str, row: int, reactor: Any, clock: Callable[[], float] = time.monotonic):
        fd, self.map = shared.map_file(path)
        os.close(fd)  # the mapping stays
        self.rows = len(self.map) // _SLOT.size
        if not 0 <= row < self.rows:
            raise ValueError(f"worker row {row} outside the {self.rows} rows of {path}")
        self.row = row
        self.reactor = reactor
        self.clock = clock
        self.open = 0
        self.paused = False
        self.stopped = False
        self.ports: set[SharedPort] = set()
        self._beat: Any = None
        self._recheck: Any = None

    # -- the counts ---------------------------------------------------------------------------
    def publish(self) -> None:
        if self.stopped:  # draining: its last sessions closing must not make it live again
            return
        _SLOT.pack_into(self.map, self.row * _SLOT.size, self.open, self.clock())

    def headroom(self) -> int:
        """Connections this worker may still accept now (<= 0: none)."""
        now = self.clock()
        least = self.open
        for row in range(self.rows):
            if row != self.row:
                count, beat = _SLOT.unpack_from(self.map, row * _SLOT.size)
                if beat and now - beat <= STALE:  # 0: absent
                    least = min(least, count)
        return least + slack(least) - self.open

    def opened(self) -> None:
        self.open += 1
        self.publish()
        if not self.paused and self.headroom() <= 0:
            self.pause()

    def closed(self) -> None:
        self.open = max(0, self.open - 1)
        self.publish()
        if self.paused and self.headroom() > 0:
            self.resume()

    # -- the gate -----------------------------------------------------------------------------
    def pause(self) -> None:
        self.paused = True
        for port in self.ports:
            port.stopReading()
        if self._recheck is None:
            self._recheck = self.reactor.callLater(RECHECK, self._look)

    def resume(self) -> None:
        self.paused = False
        if self._recheck is not None and self._recheck.active():
            self._recheck.cancel()
        self._recheck = None
        for port in self.ports:
            if not port.disconnecting:
                port.startReading()

    def _look(self) -> None:
        self._recheck = None
        if not self.paused:
            return
        if self.headroom() > 0:
            self.resume()
        else:
            self._recheck = self.reactor.callLater(RECHECK, self._look)

    def _heartbeat(self) -> None:
        self.publish()
        self._beat = self.reactor.callLater(HEARTBEAT, self._heartbeat)

    def start(self) -> None:
        """The listeners are up: from now on the others wait for this worker."""
        self.stopped = False
        self._heartbeat()

    def stop(self) -> None:
        """Draining: no longer a worker the others wait for."""
        for call in (self._beat, self._recheck):
            if call is not None and call.active():
                call.cancel()
        self._beat = self._recheck = None
        self.paused = False
        self.stopped = True
        self.ports.clear()
        self.map[self.row * _SLOT.size:(self.row + 1) * _SLOT.size] = bytes(_SLOT.size)

    def endpoint(self, reactor: Any, description: str) -> Any:
        """The endpoint for a listener description: inherited TCP sockets
        accept through this share, anything else as Twisted parses it."""
        endpoint = serverFromString(reactor, description)
        if isinstance(endpoint, AdoptedStreamServerEndpoint) and endpoint.addressFamily in (
                socket.AF_INET, socket.AF_INET6):
            return SharedSocketEndpoint(reactor, endpoint.fileno, endpoint.addressFamily, self)
        return endpoint


class SharedPort(tcp.Port):
    """A listening TCP port that accepts only within its worker's share."""

    share: ConnectionShare

    def startListening(self) -> None:
        super().startListening()
        self.share.ports.add(self)
        if self.share.paused:
            self.stopReading()

    def connectionLost(self, reason: Any) -> None:
        self.share.ports.discard(self)
        super().connectionLost(reason)

    def doRead(self) -> None:
        room = self.share.headroom()
        if room <= 0:
            self.share.pause()
            return
        # tcp.Port accepts up to numberAccepts in one call and grows it
        # under load; a whole burst must not go to one worker.
        self.numberAccepts = min(room, MAX_BURST)
        super().doRead()


@implementer(IStreamServerEndpoint)
class SharedSocketEndpoint:
    """An inherited listening TCP descriptor as a SharedPort."""

    def __init__(self, reactor: Any, fileno: int, family: int, share: ConnectionShare):
        self.reactor = reactor
        self.fileno = fileno
        self.family = family
        self.share = share

    def listen(self, factory: Any) -> defer.Deferred:
        try:
            fdesc.setNonBlocking(self.fileno)
            port = SharedPort._fromListeningDescriptor(self.reactor, self.fileno, self.family, factory)
            port.share = self.share
            port.startListening()
            os.close(self.fileno)  # the port holds its own duplicate
        except Exception:
            return defer.fail()
        return defer.succeed(port)
