# -*- test-case-name: tests.workers.test_shared -*-
"""The cross-process notification bus of the workers of one data directory.

Best-effort datagrams, each one kind byte and a payload: the store's change
notification (b"F", xmail.store.notify) and the queue kick (b"Q",
xmail.service) ride on it.  Built by the worker (xmail.workers.runtime) and
injected into the store and the core at construction: the store never
imports this package (issue 14).  One process on its own has none.
"""

from __future__ import annotations

import errno
import hashlib
import itertools
import os
import socket
from collections.abc import Callable
from typing import Any

from twisted.logger import Logger

MAX_DATAGRAM = 4096  # well under the default socket buffer
_channel_numbers = itertools.count(1)  # several buses in one process (tests)


class NotifyBus:
    """Kind byte -> handler dispatch over this process's NotifyChannel.

    A fault opening the socket is logged and leaves the bus silent: every
    user of it has a poller that catches up (the store polls each second,
    the queue runner scans on a timer)."""

    _log = Logger()

    def __init__(self, directory: str, reactor: Any):
        self.directory = directory
        self.reactor = reactor
        self.handlers: dict[bytes, Callable[[bytes], None]] = {}
        self.channel: NotifyChannel | None = None

    def register(self, kind: bytes, handler: Callable[[bytes], None]) -> None:
        """handler(payload) runs on the reactor thread for each datagram of kind."""
        if len(kind) != 1:
            raise ValueError("a datagram kind is one byte")
        self.handlers[kind] = handler

    def open(self) -> None:
        if self.channel is not None:
            return
        channel = NotifyChannel(self.directory, self.reactor, self._received)
        try:
            channel.open()
        except OSError as e:
            self._log.warn("no notification socket ({error}); polling only", error=e)
            return
        self.channel = channel

    def close(self) -> None:
        if self.channel is not None:
            self.channel.close()
            self.channel = None

    def broadcast(self, kind: bytes, payload: bytes = b"") -> None:
        """Send to every other process of the data directory (best effort)."""
        if self.channel is not None:
            self.channel.broadcast(kind + payload)

    def _received(self, data: bytes) -> None:
        handler = self.handlers.get(data[:1])
        if handler is None:
            return
        try:
            handler(data[1:])
        except Exception:
            self._log.failure("notification handler failed")


class NotifyChannel:
    """This process's datagram socket, and the sends to its peers.

    Sockets live in Linux's abstract namespace (no path length limit, gone
    with their process); each has a marker file in the notify directory,
    `<pid>.<n>`, and its address is derived from the data directory and the
    marker's name.  Peers are the other markers, listed again only when the
    directory's mtime moved (a worker came or went).  A peer whose address
    refuses (its process died) has its marker removed.  Reading is a reactor
    reader (IReadDescriptor), never a thread.
    """

    _log = Logger()

    def __init__(self, directory: str, reactor: Any, received: Callable[[bytes], None]):
        self.directory = directory
        self.reactor = reactor
        self.received = received
        self.name = f"{os.getpid()}.{next(_channel_numbers)}"
        self.marker = os.path.join(directory, self.name)
        digest = hashlib.blake2b(os.path.realpath(directory).encode(), digest_size=12).hexdigest()
        self._prefix = b"\0xmail-notify/" + digest.encode() + b"/"
        self.socket: socket.socket | None = None
        self._peers: list[tuple[str, bytes]] = []
        self._listed_mtime = -1
        self.sent = 0  # datagrams sent (stats, tests)
        self.dropped = 0  # datagrams a full peer buffer refused

    def address(self, name: str) -> bytes:
        return self._prefix + name.encode()

    def open(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        try:
            sock.bind(self.address(self.name))
            sock.setblocking(False)
            fd = os.open(self.marker, os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC, 0o600)
            os.close(fd)
        except BaseException:
            sock.close()
            raise
        self.socket = sock
        self.reactor.addReader(self)

    def close(self) -> None:
        if self.socket is None:
            return
        self.reactor.removeReader(self)
        self.socket.close()
        self.socket = None
        try:
            os.unlink(self.marker)
        except OSError:
            pass

    # -- IReadDescriptor ------------------------------------------------------------------------------
    def fileno(self) -> int:
        return self.socket.fileno() if self.socket is not None else -1

    def logPrefix(self) -> str:
        return "notify"

    def connectionLost(self, reason: Any) -> None:
        self.socket = None

    def doRead(self) -> None:
        for _ in range(256):  # bounded: other readers get their turn
            if self.socket is None:
                return
            try:
                data = self.socket.recv(MAX_DATAGRAM)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as e:
                self._log.warn("change notification socket: {error}", error=e)
                return
            if data:
                self.received(data)

    # -- sending --------------------------------------------------------------------------------------------
    def peers(self) -> list[tuple[str, bytes]]:
        try:
            mtime = os.stat(self.directory).st_mtime_ns
        except OSError:
            return []
        if mtime != self._listed_mtime:
            self._listed_mtime = mtime
            try:
                names = os.listdir(self.directory)
            except OSError:
                names = []
            self._peers = [(name, self.address(name)) for name in names if name != self.name]
        return self._peers

    def broadcast(self, data: bytes) -> None:
        if self.socket is None:
            return
        for name, address in self.peers():
            try:
                self.socket.sendto(data, address)
                self.sent += 1
            except (BlockingIOError, InterruptedError):
                self.dropped += 1  # the peer is busy; its poller catches up
            except OSError as e:
                if e.errno == errno.ECONNREFUSED:
                    # Its process is gone: forget its marker.
                    try:
                        os.unlink(os.path.join(self.directory, name))
                    except OSError:
                        pass
                    self._listed_mtime = -1
                else:
                    self._log.warn("cannot notify {peer}: {error}", peer=name, error=e)
