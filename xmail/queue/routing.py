# -*- test-case-name: tests.queue.test_routing -*-
"""Where mail for a domain goes: smarthost, static transport map, or MX.

Order: a configured `[relay]` smarthost takes everything; otherwise
`[transport]` maps a domain to a fixed "host:port"; otherwise DNS MX
records (RFC 5321 §5.1) looked up with twisted.names, with the implicit MX
(the domain's own A/AAAA records) when there is none.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.names import dns, error

from xmail.config import Settings
from xmail.dns import make_resolver

SMTP_PORT = 25
RELAY_KEY = "[relay]"


class RouteError(Exception):
    """No host to try; `temporary` decides between retry and bounce."""

    def __init__(self, message: str, *, temporary: bool, status: str):
        super().__init__(message)
        self.temporary = temporary
        self.status = status


@dataclass(frozen=True)
class Route:
    hosts: tuple[tuple[str, int], ...]  # in the order to try
    require_tls: bool = False
    authenticate: bool = False  # use the [relay] credentials
    implicit_tls: bool = False  # port 465 smarthost (RFC 8314)


def parse_host_port(value: str, default_port: int = SMTP_PORT) -> tuple[str, int]:
    """ "host", "host:port", "[v6::addr]:port" -> (host, port)."""
    value = value.strip()
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif value.count(":") == 1:
        host, _, port = value.partition(":")
    else:
        host, port = value, ""
    if not host or (port and not port.isdigit()):
        raise ValueError(f"not host:port: {value!r}")
    return host, int(port) if port else default_port


class Router:
    """Maps a recipient domain to a destination key and its route."""

    def __init__(self, settings: Settings, resolver: Any = None):
        self.settings = settings
        self._resolver = resolver
        self.myself = settings.server.hostname.lower().rstrip(".")

    @property
    def resolver(self) -> Any:
        if self._resolver is None:
            self._resolver = make_resolver(self.settings.dns)
        return self._resolver

    def destination(self, domain: str) -> str:
        """Recipients with the same key share connections and a concurrency cap."""
        if self.settings.relay.host:
            return RELAY_KEY
        return domain.lower()

    @defer.inlineCallbacks
    def route(self, key: str) -> Any:
        """-> Deferred[Route]; raises RouteError."""
        relay = self.settings.relay
        if key == RELAY_KEY:
            return Route(((relay.host, relay.port),), require_tls=relay.require_tls,
                         authenticate=bool(relay.username), implicit_tls=relay.port == 465)
        transport = self.settings.transport.get(key)
        if transport:
            try:
                return Route((parse_host_port(transport),))
            except ValueError as e:
                raise RouteError(f"bad [transport] entry for {key}: {e}", temporary=True,
                                 status="4.3.5") from None
        hosts = yield self.mx_hosts(key)
        return Route(tuple((host, SMTP_PORT) for host in hosts))

    @defer.inlineCallbacks
    def mx_hosts(self, domain: str) -> Any:
        """-> Deferred[list[str]]: MX hosts by preference (RFC 5321 §5.1)."""
        try:
            answers, _authority, _additional = yield self.resolver.lookupMailExchange(domain)
        except error.DNSNameError:
            raise RouteError(f"domain {domain} does not exist", temporary=False, status="5.1.2") from None
        except Exception as e:
            if type(e) is not error.DomainError:  # timeouts, SERVFAIL, REFUSED: try later
                raise RouteError(f"MX lookup for {domain} failed: {e!r}", temporary=True,
                                 status="4.4.3") from None
            answers = []  # "no such records"
        records = [
            (rr.payload.preference, str(rr.payload.name).lower().rstrip("."))
            for rr in answers
            if rr.type == dns.MX
        ]
        if not records:
            # RFC 5321 §5.1: no MX -> the domain itself is the implicit MX,
            # provided it has an address record.
            has_address = yield self._has_address(domain)
            if not has_address:
                raise RouteError(f"domain {domain} has no MX and no address records",
                                 temporary=False, status="5.1.2")
            return [domain]
        if len(records) == 1 and records[0][1] == "":
            # RFC 7505 §3: a null MX says the domain accepts no mail.
            raise RouteError(f"domain {domain} accepts no mail (null MX)", temporary=False, status="5.1.10")
        # RFC 5321 §5.1: equal preferences in random order.
        random.shuffle(records)
        records.sort(key=lambda record: record[0])
        # RFC 5321 §5.1: if we are in the list, only better-preferred hosts
        # may be tried, or the mail loops.
        own = [pref for pref, host in records if host == self.myself]
        if own:
            records = [(pref, host) for pref, host in records if pref < min(own)]
            if not records:
                raise RouteError(f"mail for {domain} loops back to myself", temporary=False, status="5.4.6")
        return [host for _pref, host in records if host]

    @defer.inlineCallbacks
    def _has_address(self, domain: str) -> Any:
        for lookup in (self.resolver.lookupAddress, self.resolver.lookupIPV6Address):
            try:
                answers, _a, _b = yield lookup(domain)
            except error.DNSNameError:
                raise RouteError(f"domain {domain} does not exist", temporary=False, status="5.1.2") from None
            except Exception as e:
                if type(e) is error.DomainError:
                    continue
                raise RouteError(f"address lookup for {domain} failed: {e}", temporary=True,
                                 status="4.4.3") from None
            if any(rr.type in (dns.A, dns.AAAA) for rr in answers):
                return True
        return False
