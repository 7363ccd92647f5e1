# -*- test-case-name: tests.ops.test_metrics -*-
"""The recording functions and the connection-counting factory wrapper:
label bounding, counts across plain and implicit-TLS listeners, and a
wrapper that refuses connections composing with ours."""

from __future__ import annotations

import socket
import ssl
import time
from typing import Any

from twisted.internet import protocol

from xmail import metrics


def value(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_labels_from_clients_are_bounded_and_cleaned():
    metrics.login("pop3", "weird\r\nresult")
    assert value("xmail_logins_total", protocol="pop3", result="other") >= 1
    metrics.connection_opened("im ap\n")
    assert value("xmail_connections_total", protocol="im_ap_") >= 1
    metrics.connection_closed("im ap\n")
    with metrics.timed("pop3", "RETR"):
        time.sleep(0.01)
    assert value("xmail_command_duration_seconds_sum", protocol="pop3", command="RETR") >= 0.01
    metrics.command_latency("pop3", "X" * 100, 0.1)
    assert value("xmail_command_duration_seconds_count", protocol="pop3", command="OTHER") >= 1


def test_connections_counted_on_plain_and_implicit_tls_listeners(server):
    before = {name: value("xmail_connections_total", protocol=name) for name in ("imaps", "pop3")}
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", server.port("imaps"))) as raw:
        with context.wrap_socket(raw) as tls:
            assert tls.recv(100).startswith(b"* OK")
            wait_for(lambda: value("xmail_connections_open", protocol="imaps") >= 1)
    with socket.create_connection(("127.0.0.1", server.port("pop3"))) as plain:
        assert plain.recv(100).startswith(b"+OK")
    wait_for(lambda: value("xmail_connections_open", protocol="imaps") == 0
             and value("xmail_connections_open", protocol="pop3") == 0)
    for name in ("imaps", "pop3"):
        assert value("xmail_connections_total", protocol=name) == before[name] + 1


class _Refusing:
    """What a connection cap does: buildProtocol -> None."""

    def __init__(self, wrapped: Any):
        self.wrapped = wrapped

    def buildProtocol(self, addr: Any) -> Any:
        return None

    def doStart(self) -> None:
        pass

    def doStop(self) -> None:
        pass


def test_a_refused_connection_is_not_counted_and_wrappers_compose():
    inner = protocol.Factory.forProtocol(protocol.Protocol)
    before = value("xmail_connections_total", protocol="composed")
    assert metrics.count_connections(_Refusing(inner), "composed").buildProtocol(None) is None
    assert value("xmail_connections_total", protocol="composed") == before
    counted = metrics.count_connections(inner, "composed")
    proto = counted.buildProtocol(None)
    assert isinstance(proto, protocol.Protocol) and proto.factory is inner
    assert value("xmail_connections_open", protocol="composed") == 1
    proto.connectionLost(None)
    proto.connectionLost(None)  # counted once
    assert value("xmail_connections_open", protocol="composed") == 0
    assert counted.noisy == inner.noisy  # the rest is the wrapped factory's


def test_track_records_when_a_deferred_fires():
    from twisted.internet import defer

    before = value("xmail_command_duration_seconds_count", protocol="smtp", command="DATA")
    d = defer.Deferred()
    assert metrics.track("smtp", "DATA", d, metrics.clock() - 0.5) is d
    assert value("xmail_command_duration_seconds_count", protocol="smtp", command="DATA") == before
    d.callback("250 ok")
    assert value("xmail_command_duration_seconds_count", protocol="smtp", command="DATA") == before + 1
    assert d.result == "250 ok"
    assert metrics.track("smtp", "NOOP", None, metrics.clock()) is None
    assert value("xmail_command_duration_seconds_count", protocol="smtp", command="NOOP") >= 1


def test_metrics_config_is_checked():
    import pytest

    from xmail.config import ConfigError, parse

    settings = parse('[metrics]\npublic = true\nallow = ["10.0.0.0/8", "::1"]\n', "x.toml")
    assert settings.metrics.public and settings.metrics.allow == ("10.0.0.0/8", "::1")
    with pytest.raises(ConfigError, match=r"x.toml: metrics.allow\[0\] 'ten' is not a network"):
        parse('[metrics]\nallow = ["ten"]\n', "x.toml")
    with pytest.raises(ConfigError, match="unknown key 'log.login_dayz'"):
        parse("[log]\nlogin_dayz = 3\n", "x.toml")


def test_command_latency_lookups_are_cached_and_bounded() -> None:
    # The per-command path caches the labelled histogram; client-chosen
    # names must not grow that cache past its cap (nor the registry).
    for i in range(metrics._MAX_CHILDREN + 50):
        metrics.command_latency("cachetest", f"V{i}", 0.001)
    assert len(metrics._latency_children) <= metrics._MAX_CHILDREN
    before = value("xmail_command_duration_seconds_count", protocol="cachetest", command="V1")
    metrics.command_latency("cachetest", "V1", 0.001)
    assert value("xmail_command_duration_seconds_count", protocol="cachetest", command="V1") == before + 1
