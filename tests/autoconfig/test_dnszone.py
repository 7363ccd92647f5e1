"""The zone fragment `xmailctl dns` prints, parsed record by record."""

from __future__ import annotations

from xmail.autoconfig.dnszone import zone_fragment
from xmail.autoconfig.model import ClientSettings, client_settings
from xmail.config import Settings, parse

from .conftest import PRODUCTION_TOML


def records(zone: str) -> list[tuple[str, int, str, str]]:
    """(name, ttl, type, data) of every non-comment line."""
    out = []
    for line in zone.splitlines():
        if not line or line.startswith(";"):
            continue
        name, ttl, klass, rtype, data = line.split(None, 4)
        assert klass == "IN"
        out.append((name, int(ttl), rtype, data))
    return out


def test_production_zone(servers: ClientSettings) -> None:
    zone = zone_fragment("example.com", servers)
    found = records(zone)
    assert all(ttl == 3600 for _, ttl, _, _ in found)
    assert {(name, rtype, data) for name, _, rtype, data in found} == {
        ("example.com.", "MX", "10 mail.example.com."),
        ("example.com.", "TXT", '"v=spf1 mx -all"'),
        ("autoconfig.example.com.", "CNAME", "mail.example.com."),
        ("autodiscover.example.com.", "CNAME", "mail.example.com."),
        ("_imaps._tcp.example.com.", "SRV", "0 1 993 mail.example.com."),
        ("_imap._tcp.example.com.", "SRV", "10 1 143 mail.example.com."),
        ("_pop3s._tcp.example.com.", "SRV", "20 1 995 mail.example.com."),
        ("_pop3._tcp.example.com.", "SRV", "30 1 110 mail.example.com."),
        ("_submissions._tcp.example.com.", "SRV", "0 1 465 mail.example.com."),
        ("_submission._tcp.example.com.", "SRV", "10 1 587 mail.example.com."),
    }
    assert len(found) == 10
    assert "WARNING" not in zone


def test_services_not_offered_say_so() -> None:
    settings = parse(PRODUCTION_TOML.replace('pop3 = "tcp:110"', "pop3 = []"), "t")
    zone = zone_fragment("example.com", client_settings(settings))
    found = {name: data for name, _, rtype, data in records(zone) if rtype == "SRV"}
    assert found["_pop3._tcp.example.com."] == "0 0 0 ."  # RFC 6186 §4


def test_public_host_and_ports_are_used() -> None:
    public = '[autoconfig]\nhost = "mx.example.net"\n[autoconfig.imaps]\nport = 10993\n'
    settings = parse(PRODUCTION_TOML + public, "t")
    found = {(name, rtype): data for name, _, rtype, data in
             records(zone_fragment("example.org", client_settings(settings), ttl=300))}
    assert found[("example.org.", "MX")] == "10 mx.example.net."
    assert found[("_imaps._tcp.example.org.", "SRV")] == "0 1 10993 mx.example.net."
    assert found[("autoconfig.example.org.", "CNAME")] == "mx.example.net."


def test_a_non_public_hostname_is_warned_about() -> None:
    assert "WARNING: 'localhost'" in zone_fragment("example.com", client_settings(Settings()))
