# -*- test-case-name: tests.test_connections -*-
"""Connection caps: per client address at the listener, per user after login.

[limits] max_connections_per_ip caps the connections one client address
(an IPv6 /64) holds to one protocol; imap and imaps count together, as do
submission and submissions.  The listener's factory is wrapped
(PeerLimitedFactory): a connection over the cap gets one refusal line in its
protocol's words and is closed, before the protocol sees it.

[limits] max_connections_per_user caps the logged-in sessions of one user
per protocol: `ctx.connections` (UserConnections), which a protocol asks
after a successful login and tells when the session ends.

0 switches a cap off.

Deadlines ([limits] command_timeout, login_timeout; issue 16 #4): an idle
timer that restarts on every byte lets a client trickling one byte every
few seconds hold a connection for ever.  `CommandDeadline` bounds instead
the time one command may take to arrive, counted from its first byte, and
the time from connecting to a completed login (Postfix's smtpd_timeout
covers a whole command the same way).  Big transfers (an APPEND literal, a
DATA body) are allowed MIN_TRANSFER_RATE on top, so a 40 MB upload over a
slow link still gets through while a trickle does not.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable
from typing import Any

from twisted.internet import protocol
from twisted.logger import Logger

MAX_KEY_CHARS = 320  # a client address that is not an IP address is cut here


def client_key(client_ip: str) -> str:
    """What one client is counted as, by the connection caps here and by the
    login throttle in xmail.auth: the address, an IPv6 address's /64 (one
    subscriber's allocation), an IPv4-mapped IPv6 address as IPv4."""
    try:
        address = ipaddress.ip_address(client_ip.split("%", 1)[0])
    except ValueError:
        return client_ip[:MAX_KEY_CHARS]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


# listener name -> the protocol whose connections it counts
LISTENER_PROTOCOL = {
    "smtp": "smtp",
    "submission": "submission",
    "submissions": "submission",
    "pop3": "pop3",
    "pop3s": "pop3",
    "imap": "imap",
    "imaps": "imap",
    "http": "http",
    "managesieve": "managesieve",
}

# What a client over the cap reads before the connection closes.
REFUSALS: dict[str, bytes] = {
    # RFC 5321 §3.1: a server may answer the connection with 421 and close.
    # RFC 3463 §3.8: 4.7.0 = other or undefined security status.
    "smtp": b"421 4.7.0 too many connections from your address, try again later\r\n",
    "submission": b"421 4.7.0 too many connections from your address, try again later\r\n",
    # RFC 2449 §8.1.2 / RFC 3206 §4: [SYS/TEMP] = a temporary problem.
    "pop3": b"-ERR [SYS/TEMP] too many connections from your address, try again later\r\n",
    # RFC 3501 §7.1.5: BYE as the greeting when the server will not serve.
    "imap": b"* BYE [UNAVAILABLE] too many connections from your address, try again later\r\n",
    # RFC 5804 §1.3: BYE with TRYLATER, a temporary refusal.
    "managesieve": b'BYE (TRYLATER) "too many connections from your address, try again later"\r\n',
    "http": (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 22\r\n"
             b"Retry-After: 60\r\nConnection: close\r\n\r\ntoo many connections\r\n"),
}


class ConnectionCounter:
    """(key, protocol) -> open connections, refusing more than `limit`
    (0: no limit).  Entries at zero are dropped, so the size follows the
    connections that are open."""

    def __init__(self, limit: int):
        self.limit = limit
        self._open: dict[tuple[str, str], int] = {}

    def acquire(self, key: str, protocol: str) -> bool:
        """Count one more connection; False (and nothing counted) at the cap."""
        slot = (key, protocol)
        count = self._open.get(slot, 0)
        if self.limit and count >= self.limit:
            return False
        self._open[slot] = count + 1
        return True

    def release(self, key: str, protocol: str) -> None:
        slot = (key, protocol)
        count = self._open.get(slot, 0) - 1
        if count > 0:
            self._open[slot] = count
        else:
            self._open.pop(slot, None)

    def count(self, key: str, protocol: str) -> int:
        return self._open.get((key, protocol), 0)

    def __len__(self) -> int:
        return len(self._open)


class UserConnections(ConnectionCounter):
    """ctx.connections: logged-in sessions per user and protocol.

    A protocol calls ``ctx.connections.acquire(address, "imap")`` after a
    successful login (False: refuse the login with a temporary error) and
    ``ctx.connections.release(address, "imap")`` exactly once when that
    session ends.  `address` is the canonical address (avatar.address).
    """

    def acquire(self, key: str, protocol: str) -> bool:
        return super().acquire(key.lower(), protocol)

    def release(self, key: str, protocol: str) -> None:
        super().release(key.lower(), protocol)

    def count(self, key: str, protocol: str) -> int:
        return super().count(key.lower(), protocol)


class PeerConnections(ConnectionCounter):
    """Open connections per client address (IPv6: per /64) and protocol."""

    def acquire(self, key: str, protocol: str) -> bool:
        return super().acquire(client_key(key), protocol)

    def release(self, key: str, protocol: str) -> None:
        super().release(client_key(key), protocol)

    def count(self, key: str, protocol: str) -> int:
        return super().count(client_key(key), protocol)


class Refusal(protocol.Protocol):
    """Says why, then closes."""

    def __init__(self, line: bytes):
        self.line = line

    def connectionMade(self) -> None:
        self.transport.write(self.line)
        self.transport.loseConnection()


class PeerLimitedFactory(protocol.ServerFactory):
    """Wraps a listener's factory with the per-address cap.

    The protocol built by the wrapped factory keeps the real transport (no
    ProtocolWrapper in between), so STARTTLS and the transport interface
    checks of the protocols work as before; only its connectionLost is
    chained to release the count.
    """

    _log = Logger()

    def __init__(self, wrapped: Any, counter: PeerConnections, protocol_name: str,
                 refusal: bytes):
        self.wrapped = wrapped
        self.counter = counter
        self.protocol_name = protocol_name
        self.refusal = refusal
        self.refused = 0  # connections refused (stats, tests)

    def doStart(self) -> None:
        self.wrapped.doStart()

    def doStop(self) -> None:
        self.wrapped.doStop()

    def logPrefix(self) -> str:
        prefix = getattr(self.wrapped, "logPrefix", None)
        return prefix() if prefix is not None else self.wrapped.__class__.__name__

    def buildProtocol(self, addr: Any) -> Any:
        host = getattr(addr, "host", None)
        if not isinstance(host, str):  # a UNIX socket: no address to count
            return self.wrapped.buildProtocol(addr)
        if not self.counter.acquire(host, self.protocol_name):
            self.refused += 1
            self._log.info("{protocol} connection from {host} refused: {limit} open",
                           protocol=self.protocol_name, host=host, limit=self.counter.limit)
            refusal = Refusal(self.refusal)
            refusal.factory = self
            return refusal
        try:
            proto = self.wrapped.buildProtocol(addr)
        except BaseException:
            self.counter.release(host, self.protocol_name)
            raise
        if proto is None:
            self.counter.release(host, self.protocol_name)
            return None
        connection_lost = proto.connectionLost

        def released(reason: Any = None) -> None:
            try:
                connection_lost(reason)
            finally:
                self.counter.release(host, self.protocol_name)

        proto.connectionLost = released
        return proto


def peer_limited(factory: Any, ctx: Any, listener: str) -> Any:
    """The listener's factory behind the per-address cap (unchanged when
    [limits] max_connections_per_ip is 0)."""
    counter = getattr(ctx, "peer_connections", None)
    if counter is None or not counter.limit:
        return factory
    name = LISTENER_PROTOCOL.get(listener, listener)
    return PeerLimitedFactory(factory, counter, name, REFUSALS.get(name, b""))


# Bytes per second a command carrying data (a literal, a DATA body) is
# allowed on top of [limits] command_timeout.
MIN_TRANSFER_RATE = 4096

COMMAND = "command"  # what CommandDeadline's on_expired is told
LOGIN = "login"


class CommandDeadline:
    """The whole-command and the login deadline of one connection.

    The protocol says what it sees: `pending()` while the client owes the
    rest of a command (bytes of an unfinished line, a literal or a DATA body
    still coming), `idle()` when it owes nothing (no partial command, or the
    server itself is busy or waiting for the client to read), `received(n)`
    for the bytes that arrived, and `logged_in()` once.  `on_expired(kind)`
    is called with COMMAND or LOGIN when a deadline passes; the protocol
    then says why and closes.  `clock` is the reactor or a task.Clock.
    """

    def __init__(self, clock: Any, *, command_timeout: float, login_timeout: float,
                 on_expired: Callable[[str], None], login_required: bool = True):
        self._clock = clock
        self._command_timeout = float(command_timeout)
        self._on_expired = on_expired
        self._command_call: Any = None
        self._started = 0.0
        self._bytes = 0
        self._login_call: Any = None
        if login_required and login_timeout:
            self._login_call = clock.callLater(float(login_timeout), self._login_expired)

    def received(self, nbytes: int) -> None:
        if self._command_call is not None:
            self._bytes += nbytes

    def pending(self) -> None:
        """The client is in the middle of a command: start its clock (once)."""
        if self._command_call is None and self._command_timeout:
            self._started = self._clock.seconds()
            self._bytes = 0
            self._command_call = self._clock.callLater(self._command_timeout, self._command_expired)

    def idle(self) -> None:
        """Nothing owed by the client: the command clock stops."""
        if self._command_call is not None:
            if self._command_call.active():
                self._command_call.cancel()
            self._command_call = None

    def logged_in(self) -> None:
        if self._login_call is not None:
            if self._login_call.active():
                self._login_call.cancel()
            self._login_call = None

    def stop(self) -> None:
        self.idle()
        self.logged_in()

    def _command_expired(self) -> None:
        # The data already received buys time at MIN_TRANSFER_RATE.
        allowed = self._started + self._command_timeout + self._bytes / MIN_TRANSFER_RATE
        now = self._clock.seconds()
        if allowed > now:
            self._command_call = self._clock.callLater(allowed - now, self._command_expired)
            return
        self._command_call = None
        self._on_expired(COMMAND)

    def _login_expired(self) -> None:
        self._login_call = None
        self._on_expired(LOGIN)
