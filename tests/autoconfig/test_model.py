"""Addresses, endpoint descriptions and which servers get advertised."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given
from hypothesis import strategies as st

from xmail.autoconfig.model import (
    AddressError,
    ClientSettings,
    client_settings,
    domain_from_host,
    endpoint_port,
    parse_address,
    parse_domain,
)
from xmail.config import ConfigError, ListenSettings, Settings, parse

from .conftest import EXPECTED, PRODUCTION_TOML


@pytest.mark.parametrize("text, expected", [
    ("alice@example.com", "alice@example.com"),
    ("Alice@Example.COM", "alice@example.com"),
    ("  bob@example.com ", "bob@example.com"),
    ("first.last+tag@sub.example.co.uk", "first.last+tag@sub.example.co.uk"),
    ("o'neil&co@example.com", "o'neil&co@example.com"),
    ("user@xn--fsqu00a.xn--0zwm56d", "user@xn--fsqu00a.xn--0zwm56d"),
    ("user@example.com.", "user@example.com"),
    # xmail.addresses: a Unicode domain is its IDNA 2008 A-label everywhere
    ("alice@exämple.com", "alice@xn--exmple-cua.com"),
    ("alice@faß.de", "alice@xn--fa-hia.de"),
])
def test_valid_addresses(text: str, expected: str) -> None:
    assert str(parse_address(text)) == expected


@pytest.mark.parametrize("text", [
    "", "alice", "@example.com", "alice@", "alice@localhost", "alice@@example.com",
    '"a b"@example.com', "a b@example.com", "a<b@example.com", "a>b@example.com",
    "a\"b@example.com", "a\\b@example.com", "alice@example.com\r\nX-Injected: 1",
    "alice@exa mple.com", "alice@-example.com", "alice@example-.com", "alice@exa_mple.com",
    ".alice@example.com", "alice.@example.com", "al..ice@example.com",
    "alice@example..com", "alice@ex<ample.com", "alice@example.com/x", "alice\x00@example.com",
    "älice@example.com", "alice@xn--zz.de", "a" * 65 + "@example.com",
    "a@" + "b" * 64 + ".com", "a@" + ".".join(["b" * 60] * 5), "alice@192.0.2.1",
])
def test_invalid_addresses(text: str) -> None:
    with pytest.raises(AddressError):
        parse_address(text)


@given(st.text(max_size=300))
def test_any_text_is_an_address_without_markup_or_is_refused(text: str) -> None:
    try:
        address = parse_address(text)
    except AddressError:
        return
    rendered = str(address)
    assert not set(rendered) & set('<>"\\ \r\n\t\0'), rendered
    assert rendered == rendered.lower() and rendered.isascii()


@pytest.mark.parametrize("host, expected", [
    ("autoconfig.example.com", ["autoconfig.example.com", "example.com"]),
    ("autodiscover.example.com:8080", ["autodiscover.example.com", "example.com"]),
    ("Example.COM", ["example.com"]),
    ("example.com.", ["example.com"]),
    ("localhost", []),
    ("127.0.0.1:8080", []),
    ("192.0.2.1", []),
    ("[::1]:8080", []),
    ("", []),
    ("bad host", []),
])
def test_domain_from_host(host: str, expected: list[str]) -> None:
    assert domain_from_host(host) == expected


def test_parse_domain_limits() -> None:
    assert parse_domain("A.B") == "a.b"
    with pytest.raises(AddressError):
        parse_domain("x" * 64 + ".com")


@pytest.mark.parametrize("description, port", [
    ("tcp:993", 993),
    ("tcp:993:interface=127.0.0.1", 993),
    ("tcp:port=465:interface=\\:\\:1", 465),
    ("tcp6:interface=\\:\\:1:port=587", 587),
    ("ssl:995:privateKey=key.pem", 995),
    ("TCP:143", 143),
    ("tcp:0:interface=127.0.0.1", 0),
    ("systemd:domain=INET:index=0", None),
    ("unix:/run/xmail.sock", None),
    ("tcp:http", None),
    ("tcp:70000", None),
    ("tcp", None),
])
def test_endpoint_port(description: str, port: int | None) -> None:
    assert endpoint_port(description) == port


def test_production_listeners_are_advertised_in_preference_order(servers: ClientSettings) -> None:
    assert [s.listener for s in servers.servers] == list(EXPECTED)
    for server in servers.servers:
        assert (server.protocol, server.port, server.security) == EXPECTED[server.listener]
        assert server.host == "mail.example.com"
    assert servers.hostname == "mail.example.com"
    assert [s.listener for s in servers.incoming] == ["imaps", "imap", "pop3s", "pop3"]
    assert [s.listener for s in servers.outgoing] == ["submissions", "submission"]
    assert servers.preferred("imap").port == 993
    assert servers.preferred("smtp").port == 465


def test_the_mx_listener_is_never_advertised(servers: ClientSettings) -> None:
    assert 25 not in {s.port for s in servers.servers}


def test_embedded_default_advertises_its_loopback_ports() -> None:
    ports = {s.listener: s.port for s in client_settings(Settings()).servers}
    assert ports == {"imaps": 2993, "imap": 2143, "pop3s": 2995, "pop3": 2110,
                     "submissions": 2465, "submission": 2587}


def test_bound_ports_replace_port_zero_and_systemd() -> None:
    settings = dataclasses.replace(Settings(), listen=ListenSettings(
        imaps=("tcp:0:interface=127.0.0.1",), imap=("systemd:domain=INET:index=0",),
        pop3=(), pop3s=(), submission=("tcp:0",), submissions=()))
    assert client_settings(settings).servers == ()
    bound = client_settings(settings, {"imaps": 40993, "imap": 40143, "submission": 40587, "http": 8080})
    assert {s.listener: s.port for s in bound.servers} == {"imaps": 40993, "imap": 40143, "submission": 40587}


def test_disabled_listeners_are_not_advertised() -> None:
    toml = PRODUCTION_TOML.replace('pop3 = "tcp:110"', "pop3 = []")
    settings = parse(toml.replace('submission = "tcp:587"', "submission = []"), "x.toml")
    listeners = [s.listener for s in client_settings(settings).servers]
    assert listeners == ["imaps", "imap", "pop3s", "submissions"]


def test_autoconfig_overrides_host_and_ports() -> None:
    settings = parse(PRODUCTION_TOML + """
[autoconfig]
host = "public.example.net"

[autoconfig.imaps]
port = 10993

[autoconfig.submissions]
host = "smtp.example.net"
port = 10465

[autoconfig.pop3]
port = 10110
""", "nat.toml")
    servers = {s.listener: s for s in client_settings(settings, {"imaps": 993, "pop3": 110}).servers}
    assert (servers["imaps"].host, servers["imaps"].port) == ("public.example.net", 10993)
    assert (servers["imap"].host, servers["imap"].port) == ("public.example.net", 143)
    assert (servers["submissions"].host, servers["submissions"].port) == ("smtp.example.net", 10465)
    assert servers["pop3"].port == 10110  # the override wins over the bound port
    assert client_settings(settings).hostname == "public.example.net"


def test_autoconfig_port_advertises_a_listener_behind_a_proxy() -> None:
    settings = parse(PRODUCTION_TOML.replace('imaps = "tcp:993"', "imaps = []")
                     + "[autoconfig.imaps]\nport = 993\n", "proxy.toml")
    assert client_settings(settings).preferred("imap").port == 993


def test_autoconfig_defaults_change_nothing() -> None:
    assert parse("", "empty.toml").autoconfig == Settings().autoconfig
    assert Settings().autoconfig.host == "" and Settings().autoconfig.imaps.port == 0


@pytest.mark.parametrize("toml, message", [
    ("[autoconfig.imaps]\nport = 65536\n", "autoconfig.imaps.port must be at most 65535"),
    ("[autoconfig.imaps]\nport = -1\n", "autoconfig.imaps.port must not be negative"),
    ("[autoconfig.imaps]\nport = \"993\"\n", "autoconfig.imaps.port must be an integer"),
    ("[autoconfig]\nhost = \"a b\"\n", "autoconfig.host 'a b' is not a host name"),
    ("[autoconfig.pop3]\nhost = \"x\\ny\"\n", "autoconfig.pop3.host"),
    ("[autoconfig]\nsmtp = 25\n", "unknown key 'autoconfig.smtp'"),
    ("[autoconfig.imap]\nhostname = \"x\"\n", "unknown key 'autoconfig.imap.hostname'"),
])
def test_autoconfig_config_errors_name_the_key_and_file(toml: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        parse(toml, "bad.toml")
    assert str(e.value).startswith("bad.toml: ") and message in str(e.value)
