# -*- test-case-name: tests.test_dns -*-
"""The one place a DNS resolver is made ([dns] servers, DESIGN.md).

Every lookup -- MX for the outbound queue today; SPF, DKIM and DMARC for
mail protection -- goes through twisted.names, asynchronous on the reactor
(never the blocking system resolver, which would stall every session).
With `[dns] servers` set, only those resolvers are asked (tests and
air-gapped installs point every lookup at one of their own); empty, the
system's resolvers from /etc/resolv.conf, with /etc/hosts first.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.abstract import isIPv6Address
from twisted.names import client, hosts, resolve

from xmail.config import DnsSettings

# Seconds before each retransmission of a query; after the last the lookup
# fails (a DNS error the caller turns into a temporary failure).  Shorter
# than twisted.names' (1, 3, 11, 45): an SMTP transaction waits on it.
TIMEOUTS = (1, 3, 11)


# Queries one UDP port serves before the next query opens a fresh one.
QUERIES_PER_PORT = 200


class _Port:
    def __init__(self, protocol: Any):
        self.protocol = protocol
        self.uses = 0
        self.in_flight = 0
        self.retired = False

    def release(self) -> None:
        if self.retired and self.in_flight == 0 and self.protocol.transport is not None:
            self.protocol.transport.stopListening()


class SharedPortResolver(client.Resolver):
    """twisted.names' resolver, but a UDP port serves QUERIES_PER_PORT
    queries instead of one.  twisted.names binds a new random port per
    query, and Twisted logs every UDP port opened and closed: with SPF,
    DKIM and DMARC asking several names per message, formatting those log
    lines cost more CPU than the lookups (bench/protection_bench.py).
    Queries in flight on one port keep random 16-bit IDs and replies are
    matched by ID and source address (DNSDatagramProtocol); the port still
    changes every few hundred queries."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self._ports: dict[str, _Port] = {}

    def _query(self, *args: Any) -> Any:
        interface = "::" if isIPv6Address(args[0][0]) else ""
        port = self._ports.get(interface)
        if port is None or port.uses >= QUERIES_PER_PORT or port.protocol.transport is None:
            if port is not None:
                port.retired = True
                port.release()
            port = self._ports[interface] = _Port(self._connectedProtocol(interface=interface))
        port.uses += 1
        port.in_flight += 1
        d = port.protocol.query(*args)

        def done(result: Any) -> Any:
            port.in_flight -= 1
            port.release()
            return result

        return d.addBoth(done)


def make_resolver(settings: DnsSettings, reactor: Any = None) -> Any:
    """An IResolver for settings (the `[dns]` section)."""
    servers = settings.addresses()
    if not servers:
        # client.createResolver's chain, with our resolver: /etc/hosts first.
        return resolve.ResolverChain([hosts.Resolver(b"/etc/hosts"),
                                      SharedPortResolver(resolv=b"/etc/resolv.conf", reactor=reactor)])
    return SharedPortResolver(servers=servers, timeout=TIMEOUTS, reactor=reactor)
