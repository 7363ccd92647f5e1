"""The DNS bridge: worker threads ask twisted.names on the reactor, under
a deadline; the reactor thread is refused the blocking entry."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from twisted.internet.protocol import DatagramProtocol
from twisted.names import dns

from tests.filter.authcheck.conftest import Env, txt
from tests.support.server import in_reactor
from xmail.filter.authcheck.dnsbridge import DnsBridge, DnsTemporary, OversizeRecord


def in_thread(fn: Any) -> Any:
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(fn())
        except Exception as e:
            out.append(e)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(20)
    return out[0]


def test_answers_nxdomain_and_no_data(env: Env) -> None:
    env.zone.records[("t.example", dns.TXT)] = [txt("a" * 300), txt("b")]
    env.zone.records[("t.example", dns.A)] = [dns.Record_A("192.0.2.1")]
    env.zone.records[("t.example", dns.MX)] = [dns.Record_MX(5, b"mx.t.example")]
    bridge = DnsBridge(env.resolver, env.reactor, 10)
    assert in_thread(lambda: bridge.txt("t.example")) == [b"a" * 300, b"b"]
    assert [a.data for a in in_thread(lambda: bridge.ask("t.example", dns.A))] == ["192.0.2.1"]
    assert [a.data for a in in_thread(lambda: bridge.ask("t.example", dns.MX))] == [(5, "mx.t.example")]
    assert in_thread(lambda: bridge.ask("t.example", dns.AAAA)) == []   # no data
    assert in_thread(lambda: bridge.ask("nx.example", dns.TXT)) == []  # NXDOMAIN


def test_a_record_over_4k_is_refused(env: Env) -> None:
    env.zone.records[("big.example", dns.TXT)] = [txt("x" * 4097)]
    env.zone.records[("fits.example", dns.TXT)] = [txt("x" * 4096)]
    bridge = DnsBridge(env.resolver, env.reactor, 10)
    assert isinstance(in_thread(lambda: bridge.txt("big.example")), OversizeRecord)
    assert in_thread(lambda: bridge.txt("fits.example")) == [b"x" * 4096]


def test_the_reactor_thread_may_not_block_on_it(env: Env) -> None:
    bridge = DnsBridge(env.resolver, env.reactor, 10)
    with pytest.raises(RuntimeError):
        in_reactor(bridge.ask, "t.example", dns.TXT)


def test_a_passed_deadline_or_a_cancel_asks_nothing(env: Env) -> None:
    late = DnsBridge(env.resolver, env.reactor, 0)
    assert isinstance(in_thread(lambda: late.txt("example.net")), DnsTemporary)
    cancelled = DnsBridge(env.resolver, env.reactor, 10)
    cancelled.cancel()
    assert isinstance(in_thread(lambda: cancelled.txt("example.net")), DnsTemporary)
    assert env.zone.asked == [] and late.asked == cancelled.asked == 0


def test_a_silent_server_costs_one_query_timeout(silent_env: Env) -> None:
    bridge = DnsBridge(silent_env.resolver, silent_env.reactor, 10, query_timeout=0.5)
    started = time.monotonic()
    assert isinstance(in_thread(lambda: bridge.txt("example.net")), DnsTemporary)
    assert 0.4 < time.monotonic() - started < 2


class Garbage(DatagramProtocol):
    """Answers every query with its id and a header that promises a
    question and five answers, then noise that is neither."""

    def datagramReceived(self, data: bytes, addr: Any) -> None:
        self.transport.write(data[:2] + b"\x81\x80\x00\x01\x00\x05\x00\x00\x00\x00\xff\xff\xff", addr)


def test_garbage_replies_are_a_temporary_error(env: Env) -> None:
    port = in_reactor(env.reactor.listenUDP, 0, Garbage(), interface="127.0.0.1")
    try:
        from xmail.config import DnsSettings
        from xmail.dns import make_resolver

        resolver = make_resolver(DnsSettings(servers=(f"127.0.0.1:{port.getHost().port}",)), env.reactor)
        bridge = DnsBridge(resolver, env.reactor, 10, query_timeout=0.5)
        started = time.monotonic()
        assert isinstance(in_thread(lambda: bridge.txt("example.net")), DnsTemporary)
        assert time.monotonic() - started < 2
    finally:
        in_reactor(port.stopListening)


def test_the_system_resolver_chain_works_too(env: Env, tmp_path: Any) -> None:
    # [dns] servers empty: twisted.names' resolver chain, hosts file first
    from twisted.names import client

    hosts = tmp_path / "hosts"
    hosts.write_text("192.0.2.77 sys.example\n")
    resolver = in_reactor(client.createResolver, None, str(tmp_path / "none"), str(hosts))
    bridge = DnsBridge(resolver, env.reactor, 10, query_timeout=1)
    assert [a.data for a in in_thread(lambda: bridge.ask("sys.example", dns.A))] == ["192.0.2.77"]


def test_a_worker_never_waits_on_a_busy_reactor_past_the_deadline(env: Env) -> None:
    # The reactor is held (as when it stops the worker pool at shutdown and
    # joins the threads): the worker gives up at the deadline (+1 s grace).
    bridge = DnsBridge(env.resolver, env.reactor, 0.5)
    held = threading.Event()
    env.reactor.callFromThread(held.wait, 5)
    started = time.monotonic()
    try:
        outcome = in_thread(lambda: bridge.txt("example.net"))
    finally:
        held.set()
    assert isinstance(outcome, DnsTemporary) and time.monotonic() - started < 2.5
