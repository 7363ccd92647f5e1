# -*- test-case-name: tests.queue.test_routing -*-
"""Routing: smarthost, transport map, MX (RFC 5321 §5.1) with a resolver
that answers from a table (there is no network here)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer
from twisted.names import dns, error

from xmail.config import parse
from xmail.queue.routing import RELAY_KEY, Route, RouteError, Router, parse_host_port


class TableResolver:
    """lookupMailExchange / lookupAddress / lookupIPV6Address from dicts;
    a value that is an exception class is raised."""

    def __init__(self, mx: dict[str, Any], a: dict[str, Any] | None = None,
                 aaaa: dict[str, Any] | None = None):
        self.tables = {dns.MX: mx, dns.A: a or {}, dns.AAAA: aaaa or {}}

    def _lookup(self, kind: int, name: str) -> defer.Deferred[Any]:
        value = self.tables[kind].get(name, [])
        if isinstance(value, type) and issubclass(value, Exception):
            return defer.fail(value(name))
        records = []
        for item in value:
            if kind == dns.MX:
                payload = dns.Record_MX(item[0], item[1])
            elif kind == dns.A:
                payload = dns.Record_A(item)
            else:
                payload = dns.Record_AAAA(item)
            records.append(dns.RRHeader(name, kind, dns.IN, 300, payload))
        return defer.succeed((records, [], []))

    def lookupMailExchange(self, name: str) -> defer.Deferred[Any]:
        return self._lookup(dns.MX, name)

    def lookupAddress(self, name: str) -> defer.Deferred[Any]:
        return self._lookup(dns.A, name)

    def lookupIPV6Address(self, name: str) -> defer.Deferred[Any]:
        return self._lookup(dns.AAAA, name)


def route(toml: str, key: str, resolver: Any = None) -> Route:
    router = Router(parse(toml or '[server]\nhostname = "mail.example.com"\n'), resolver)
    out: list[Any] = []
    router.route(key).addBoth(out.append)
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def test_parse_host_port():
    assert parse_host_port("mx.test") == ("mx.test", 25)
    assert parse_host_port("127.0.0.1:2525") == ("127.0.0.1", 2525)
    assert parse_host_port("[::1]:2525") == ("::1", 2525)
    assert parse_host_port("[::1]") == ("::1", 25)
    with pytest.raises(ValueError):
        parse_host_port("mx.test:smtp")


def test_transport_map_before_mx():
    toml = '[transport]\n"Other.Test" = "127.0.0.1:2600"\n'
    r = route(toml, "other.test", TableResolver({"other.test": [(10, "mx.other.test")]}))
    assert r.hosts == (("127.0.0.1", 2600),)


def test_relay_takes_everything():
    toml = '[relay]\nhost = "smarthost.test"\nport = 465\nusername = "u"\npassword = "p"\n'
    router = Router(parse(toml))
    assert router.destination("any.test") == RELAY_KEY
    r = route(toml, RELAY_KEY)
    assert r.hosts == (("smarthost.test", 465),) and r.implicit_tls and r.authenticate and r.require_tls


def test_mx_by_preference():
    resolver = TableResolver({"d.test": [(20, "b.d.test"), (10, "a.d.test"), (30, "c.d.test")]})
    assert route("", "d.test", resolver).hosts == (("a.d.test", 25), ("b.d.test", 25), ("c.d.test", 25))


def test_equal_preferences_are_shuffled():
    resolver = TableResolver({"d.test": [(10, f"mx{i}.d.test") for i in range(6)]})
    orders = {route("", "d.test", resolver).hosts for _ in range(40)}
    assert len(orders) > 1


def test_implicit_mx_from_address_records():
    assert route("", "d.test", TableResolver({}, a={"d.test": ["192.0.2.1"]})).hosts == (("d.test", 25),)
    assert route("", "d.test", TableResolver({}, aaaa={"d.test": ["2001:db8::1"]})).hosts == (("d.test", 25),)


@pytest.mark.parametrize(
    ("resolver", "temporary", "status"),
    [
        (TableResolver({"d.test": error.DNSNameError}), False, "5.1.2"),
        (TableResolver({}), False, "5.1.2"),  # no MX, no address
        (TableResolver({"d.test": [(0, "")]}), False, "5.1.10"),  # RFC 7505 null MX
        (TableResolver({"d.test": error.DNSServerError}), True, "4.4.3"),
        (TableResolver({"d.test": error.DNSQueryTimeoutError}), True, "4.4.3"),
        (TableResolver({}, a={"d.test": error.DNSServerError}), True, "4.4.3"),
        (TableResolver({"d.test": [(10, "mail.example.com")]}), False, "5.4.6"),  # we are the best MX
    ],
)
def test_route_errors(resolver, temporary, status):
    with pytest.raises(RouteError) as e:
        route("", "d.test", resolver)
    assert e.value.temporary is temporary and e.value.status == status


def test_only_better_mx_than_ourselves():
    resolver = TableResolver({"d.test": [(10, "primary.d.test"), (20, "mail.example.com"), (30, "z.d.test")]})
    assert route("", "d.test", resolver).hosts == (("primary.d.test", 25),)
