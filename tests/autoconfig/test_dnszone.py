"""The zone fragment `xmailctl dns` prints, parsed record by record."""

from __future__ import annotations

from xmail.autoconfig.dnszone import DkimKey, txt_data, txt_strings, zone_fragment
from xmail.autoconfig.dnszone import records as zone_records
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
        ("_dmarc.example.com.", "TXT", '"v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com"'),
        ("autoconfig.example.com.", "CNAME", "mail.example.com."),
        ("autodiscover.example.com.", "CNAME", "mail.example.com."),
        ("_imaps._tcp.example.com.", "SRV", "0 1 993 mail.example.com."),
        ("_imap._tcp.example.com.", "SRV", "10 1 143 mail.example.com."),
        ("_pop3s._tcp.example.com.", "SRV", "20 1 995 mail.example.com."),
        ("_pop3._tcp.example.com.", "SRV", "30 1 110 mail.example.com."),
        ("_submissions._tcp.example.com.", "SRV", "0 1 465 mail.example.com."),
        ("_submission._tcp.example.com.", "SRV", "10 1 587 mail.example.com."),
    }
    assert len(found) == 11
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


RSA_TEXT = "v=DKIM1; k=rsa; p=" + "M" * 392  # the length of a 2048-bit key's record


def test_dkim_selectors_active_and_retired_are_published(servers: ClientSettings) -> None:
    keys = [DkimKey("x20261201", "retired", RSA_TEXT),
            DkimKey("x20261206", "active", RSA_TEXT.replace("M", "N")),
            DkimKey("x20261206e", "active", "v=DKIM1; k=ed25519; p=" + "E" * 44)]
    zone = zone_fragment("example.com", servers, dkim=keys)
    found = {name: data for name, _, rtype, data in records(zone) if rtype == "TXT"}
    for key in keys:
        data = found[f"{key.selector}._domainkey.example.com."]
        strings = data[1:-1].split('" "')
        assert "".join(strings) == key.text and all(len(s) <= 255 for s in strings)
    assert len(found["x20261201._domainkey.example.com."].split('" "')) == 2  # RSA: two strings
    assert "; DKIM selector x20261201 is retired" in zone
    assert "no DKIM key" not in zone


def test_without_keys_the_zone_says_how_to_add_one(servers: ClientSettings) -> None:
    zone = zone_fragment("example.com", servers)
    assert "; no DKIM key: create one with `xmailctl dkim add example.com`" in zone


def test_txt_strings_and_quoting() -> None:
    assert txt_strings("") == [""]
    assert txt_strings("a" * 255) == ["a" * 255]
    assert txt_strings("a" * 256) == ["a" * 255, "a"]
    assert [len(s) for s in txt_strings("b" * 600)] == [255, 255, 90]
    assert txt_data('say "hi" \\ there') == '"say \\"hi\\" \\\\ there"'


def test_records_carry_what_a_check_expects(servers: ClientSettings) -> None:
    keys = [DkimKey("s1", "active", "v=DKIM1; p=K")]
    rows = {r.what: r for r in zone_records("example.com", servers, keys)}
    assert rows["MX"].value == (10, "mail.example.com.")
    assert rows["SPF"].value == "v=spf1 mx -all"
    assert rows["DKIM s1 (active)"].name == "s1._domainkey.example.com."
    assert rows["DMARC"].value == "v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com"
    assert rows["SRV imaps"].value == (0, 1, 993, "mail.example.com.")
    assert rows["autoconfig"].value == "mail.example.com."
