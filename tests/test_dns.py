# -*- test-case-name: tests.test_dns -*-
"""[dns] servers: every lookup goes to the configured resolvers, here a real
twisted.names server on a loopback port (xmail.dns.make_resolver)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.names import dns

from tests.conftest import in_reactor, reactor_running
from tests.support.dns import Zone, serve_zone
from tests.support.wait import wait_until
from xmail.config import ConfigError, parse, parse_dns_server
from xmail.dns import make_resolver
from xmail.queue.routing import RouteError, Router


@pytest.fixture
def zone() -> Any:
    yield from serve_zone({("example.test", dns.MX): [dns.Record_MX(20, b"mx2.example.test"),
                                                      dns.Record_MX(10, b"mx1.example.test")]})


def router_for(zone: Zone) -> Router:
    settings = parse(f'[dns]\nservers = ["127.0.0.1:{zone.port}"]\n', "<test>")
    return Router(settings)


def test_mx_lookup_asks_the_configured_resolver(zone: Zone) -> None:
    # example.test exists nowhere but in this zone: an answer proves the
    # lookup went to the configured server and not the system's.
    router = router_for(zone)
    assert in_reactor(router.mx_hosts, "example.test") == ["mx1.example.test", "mx2.example.test"]
    assert ("example.test", dns.MX) in zone.asked


def test_a_name_the_resolver_denies_is_a_permanent_failure(zone: Zone) -> None:
    router = router_for(zone)
    with pytest.raises(RouteError) as caught:
        in_reactor(router.mx_hosts, "nowhere.test")
    assert (caught.value.temporary, caught.value.status) == (False, "5.1.2")
    assert ("nowhere.test", dns.MX) in zone.asked


def test_only_the_configured_servers_are_used() -> None:
    settings = parse('[dns]\nservers = ["127.0.0.1:5353", "[::1]:54", "10.0.0.1"]\n', "<test>")
    resolver = make_resolver(settings.dns, reactor_running())
    assert resolver.servers == [("127.0.0.1", 5353), ("::1", 54), ("10.0.0.1", 53)]
    assert resolver.resolv is None  # /etc/resolv.conf is not read


@pytest.mark.parametrize("value", ["dns.example:53", "127.0.0.1:0", "127.0.0.1:70000", "[::1]x",
                                   "1.2.3.4:abc", ""])
def test_a_bad_server_names_the_key(value: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse(f'[dns]\nservers = ["{value}"]\n', "xmail.toml")
    assert str(caught.value).startswith(f"xmail.toml: dns.servers[0] {value!r} is not an IP address")


def test_parse_dns_server() -> None:
    assert parse_dns_server("192.0.2.1") == ("192.0.2.1", 53)
    assert parse_dns_server("::1") == ("::1", 53)
    assert parse_dns_server("[2001:db8::1]:5300") == ("2001:db8::1", 5300)


def test_a_udp_port_serves_many_queries_then_is_replaced(monkeypatch: Any) -> None:
    from twisted.internet import defer

    from xmail import dns as xmail_dns

    monkeypatch.setattr(xmail_dns, "QUERIES_PER_PORT", 4)
    records = {(f"h{i}.example.test", dns.A): [dns.Record_A(f"192.0.2.{i}")] for i in range(1, 7)}
    zone_gen = serve_zone(records)
    zone = next(zone_gen)
    try:
        settings = parse(f'[dns]\nservers = ["127.0.0.1:{zone.port}"]\n', "<test>")
        resolver = make_resolver(settings.dns, reactor_running())

        def addresses(names: list[str]) -> Any:
            def first_address(result: Any) -> str:
                answers, _authority, _additional = result
                return answers[0].payload.dottedQuad()

            return defer.gatherResults([resolver.lookupAddress(n).addCallback(first_address) for n in names])

        # Concurrent queries on one port: each gets its own answer.
        assert in_reactor(addresses, ["h1.example.test", "h2.example.test", "h3.example.test"]) == \
            ["192.0.2.1", "192.0.2.2", "192.0.2.3"]
        first = resolver._ports[""]
        assert first.uses == 3 and first.protocol.transport is not None
        assert in_reactor(addresses, ["h4.example.test", "h5.example.test"]) == ["192.0.2.4", "192.0.2.5"]
        second = resolver._ports[""]
        assert second is not first and first.retired and second.uses == 1
        # The first port closes once its last query is answered (Twisted
        # finishes closing a UDP port on a later turn).
        wait_until(lambda: first.protocol.transport is None, what="the first port to close")
    finally:
        zone_gen.close()
