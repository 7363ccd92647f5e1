"""Advertising ManageSieve (RFC 5804): where clients read it -- the DNS SRV
record `_sieve._tcp` (§1.8) that `xmailctl dns` prints and `dns check`
verifies, and the setup page.  The Thunderbird, Outlook and Apple
documents have no element for it and stay as they are."""

from __future__ import annotations

import io
import plistlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.cli import hosting_config, run
from tests.support.dns import Zone, serve_zone
from xmail import cli
from xmail.autoconfig import autodiscover, mobileconfig, thunderbird
from xmail.autoconfig.model import (
    MANAGESIEVE,
    SIEVE,
    STARTTLS,
    client_settings,
    endpoint_loopback,
    parse_address,
)
from xmail.autoconfig.page import TEXT, render_page
from xmail.config import Settings, parse

from .conftest import PRODUCTION_TOML
from .test_dnszone import records
from .test_page import parsed


def listening(value: str) -> str:
    """PRODUCTION_TOML with `managesieve = VALUE` in [listen]."""
    return PRODUCTION_TOML.replace("[listen]\n", f"[listen]\nmanagesieve = {value}\n")


SIEVE_TOML = listening('"tcp:4190"')
SRV = ("_sieve._tcp.example.com.", "SRV", "0 1 4190 mail.example.com.")


def settings_of(toml: str) -> Settings:
    return parse(toml, "test.toml")


def sieve_records(toml: str, domain: str = "example.com") -> list[tuple[str, str, str]]:
    from xmail.autoconfig.dnszone import zone_fragment

    zone = zone_fragment(domain, client_settings(settings_of(toml)))
    return [(name, rtype, data) for name, _, rtype, data in records(zone) if name.startswith("_sieve.")]


# -- what is advertised --------------------------------------------------------------------


def test_the_production_listener_is_advertised_with_starttls() -> None:
    sieve = client_settings(settings_of(SIEVE_TOML)).managesieve
    assert sieve is not None
    assert (sieve.listener, sieve.protocol, sieve.host, sieve.port, sieve.security) == (
        MANAGESIEVE, SIEVE, "mail.example.com", 4190, STARTTLS)  # RFC 5804 §2.2: STARTTLS, no implicit TLS


def test_a_loopback_listener_is_not_advertised() -> None:
    # The embedded default (127.0.0.1:24190), which a config without the
    # key also gets: no client elsewhere could reach it.
    assert client_settings(Settings()).managesieve is None
    assert client_settings(settings_of(PRODUCTION_TOML)).managesieve is None
    assert client_settings(settings_of(listening('["tcp:4190:interface=\\\\:\\\\:1"]'))).managesieve is None
    assert sieve_records(PRODUCTION_TOML) == []
    off = settings_of(listening("[]"))
    assert client_settings(off).managesieve is None


def test_the_first_reachable_endpoint_and_the_autoconfig_override() -> None:
    toml = listening('["tcp:24190:interface=127.0.0.1", "tcp:4190:interface=0.0.0.0"]')
    assert client_settings(settings_of(toml)).managesieve.port == 4190  # type: ignore[union-attr]
    # Behind a proxy or socket-activated: [autoconfig.managesieve] says where.
    proxied = listening('"systemd:domain=INET:index=0"') + (
        '[autoconfig.managesieve]\nhost = "sieve.example.net"\nport = 14190\n')
    sieve = client_settings(settings_of(proxied)).managesieve
    assert sieve is not None and (sieve.host, sieve.port) == ("sieve.example.net", 14190)
    assert sieve_records(proxied) == [("_sieve._tcp.example.com.", "SRV", "0 1 14190 sieve.example.net.")]


@pytest.mark.parametrize("description, loopback", [
    ("tcp:24190:interface=127.0.0.1", True),
    ("tcp:4190:interface=127.5.0.1", True),
    ("tcp6:4190:interface=\\:\\:1", True),
    ("tcp:4190:interface=localhost", True),
    ("tcp:4190", False),
    ("tcp:4190:interface=0.0.0.0", False),
    ("tcp:4190:interface=192.0.2.7", False),
    ("tcp6:4190:interface=\\:\\:", False),
    ("systemd:domain=INET:index=0", False),
    ("tcp:4190:interface=not-an-address", False),
])
def test_endpoint_loopback(description: str, loopback: bool) -> None:
    assert endpoint_loopback(description) is loopback


# -- DNS -----------------------------------------------------------------------------------


def test_the_zone_has_the_sieve_srv_record() -> None:
    assert sieve_records(SIEVE_TOML) == [SRV]
    assert sieve_records(SIEVE_TOML, "example.org") == [
        ("_sieve._tcp.example.org.", "SRV", "0 1 4190 mail.example.com.")]


@pytest.fixture
def zone() -> Iterator[Zone]:
    yield from serve_zone({})


def test_xmailctl_dns_prints_it_and_dns_check_finds_it(tmp_path: Path, zone: Zone) -> None:
    from twisted.names import dns

    config = hosting_config(tmp_path, SIEVE_TOML + f'\n[dns]\nservers = ["127.0.0.1:{zone.port}"]\n')
    status, out, err = run("--config", config, "dns", "example.com")
    assert (status, err) == (0, "")
    assert [r for r in ((n, t, d) for n, _, t, d in records(out)) if r[0].startswith("_sieve.")] == [SRV]

    def check() -> dict[str, list[str]]:
        stdout = io.StringIO()
        cli.main(["--config", config, "dns", "check", "example.com"], stdout=stdout, stderr=io.StringIO(),
                 stdin=io.StringIO())
        return {row[1]: row for row in (line.split("\t") for line in stdout.getvalue().splitlines())}

    assert check()["SRV sieve"][0] == "missing"
    zone.records[("_sieve._tcp.example.com", dns.SRV)] = [dns.Record_SRV(0, 1, 4190, b"mail.example.com")]
    assert check()["SRV sieve"][0] == "ok"
    zone.records[("_sieve._tcp.example.com", dns.SRV)] = [dns.Record_SRV(0, 1, 2000, b"mail.example.com")]
    assert check()["SRV sieve"][0] == "different"


# -- the setup page and the client documents -------------------------------------------------


@pytest.mark.parametrize("language", ["en", "zh"])
def test_the_setup_page_lists_it(language: str) -> None:
    servers = client_settings(settings_of(SIEVE_TOML))
    html = render_page(language, servers, address=parse_address("alice@example.com"))
    page = parsed(html)
    assert page.tags.count("tr") == 1 + len(servers.servers) + 1
    row = html.decode().split('<tr data-listener="managesieve">')[1].split("</tr>")[0]
    assert "ManageSieve" in row and TEXT[language]["filters"] in row
    assert '<td class="server">mail.example.com</td><td class="nowrap">4190</td>' in row
    assert f'<td class="nowrap">{TEXT[language]["starttls"]}</td>' in row
    assert page.ids["filters"] is not None and TEXT[language]["filters_steps"] in "".join(page.text)


def test_the_setup_page_without_it() -> None:
    html = render_page("en", client_settings(settings_of(PRODUCTION_TOML)))
    assert b"managesieve" not in html and b"ManageSieve" not in html and 'id="filters"' not in html.decode()


def test_the_client_documents_do_not_carry_it() -> None:
    # Thunderbird's clientConfig, Outlook's POX Autodiscover and Apple's
    # com.apple.mail.managed payload define no ManageSieve setting; an
    # invented element would be ignored at best, so they stay as they are.
    with_sieve = client_settings(settings_of(SIEVE_TOML))
    without = client_settings(settings_of(PRODUCTION_TOML))
    address = parse_address("alice@example.com")
    assert thunderbird.clientconfig_xml("example.com", with_sieve) == thunderbird.clientconfig_xml(
        "example.com", without)
    assert autodiscover.response_xml(address, with_sieve) == autodiscover.response_xml(address, without)
    profile = plistlib.dumps(mobileconfig.profile(address, with_sieve))
    assert profile == plistlib.dumps(mobileconfig.profile(address, without)) and b"4190" not in profile
