"""A real DNS server for tests: twisted.names answering from a dict of
records on a free loopback UDP port ([dns] servers = ["127.0.0.1:PORT"]).
SPF, DKIM and DMARC tests serve their TXT records the same way."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from twisted.internet import defer
from twisted.names import common, dns, error, server

from tests.support.server import in_reactor, reactor_running


class Zone(common.ResolverBase):
    """An authority for a few test names: MX records, NXDOMAIN for the rest."""

    def __init__(self, records: dict[tuple[str, int], list[Any]]):
        super().__init__()
        self.records = records
        self.asked: list[tuple[str, int]] = []

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any) -> defer.Deferred:
        key = (name.decode("ascii").lower(), type)
        self.asked.append(key)
        if not any(n == key[0] for n, _t in self.records):
            return defer.fail(error.DomainError(name))
        answers = [dns.RRHeader(name=name, type=type, payload=payload, auth=True)
                   for payload in self.records.get(key, [])]
        return defer.succeed((answers, [], []))


def serve_zone(records: dict[tuple[str, int], list[Any]]) -> Iterator[Zone]:
    """Serve records (by (lower-case name, dns type)) until the generator
    is closed; yields the Zone, its UDP port in `.port`."""
    authority = Zone(records)
    factory = server.DNSServerFactory(authorities=[authority])
    reactor = reactor_running()
    port = in_reactor(reactor.listenUDP, 0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    authority.port = port.getHost().port
    yield authority
    in_reactor(port.stopListening)
