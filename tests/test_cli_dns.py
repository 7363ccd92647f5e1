"""`xmailctl dns check DOMAIN` against a real loopback DNS server
([dns] servers), through xmail.cli.main on a real data directory."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer
from twisted.names import dns

from tests.autoconfig.conftest import PRODUCTION_TOML
from tests.support.dns import Zone, serve_zone
from xmail import cli
from xmail.autoconfig.dnszone import Record, txt_strings


def run(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    status = cli.main(list(argv), stdout=stdout, stderr=stderr, stdin=io.StringIO())
    return status, stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def zone() -> Iterator[Zone]:
    yield from serve_zone({})


@pytest.fixture
def config(tmp_path: Path, zone: Zone) -> Iterator[str]:
    yield from _config(tmp_path, zone)


def _config(tmp_path: Path, zone: Zone) -> Iterator[str]:
    """A config whose [dns] servers is the zone's server, example.com hosted
    with an rsa and an ed25519 selector."""
    path = tmp_path / "xmail.toml"
    toml = PRODUCTION_TOML.replace("[server]\n", f'[server]\ndata_dir = "{tmp_path / "data"}"\n')
    path.write_text(toml + f'\n[dns]\nservers = ["127.0.0.1:{zone.port}"]\n')
    config = str(path)
    assert run("--config", config, "domain", "add", "example.com")[0] == 0
    assert run("--config", config, "dkim", "add", "example.com")[0] == 0
    assert run("--config", config, "dkim", "add", "example.com", "--algorithm", "ed25519")[0] == 0
    yield config


def expected(config: str) -> list[Record]:
    from xmail.autoconfig.dnszone import records
    from xmail.autoconfig.model import client_settings
    from xmail.cli.context import CliContext
    from xmail.cli.dns import dkim_keys
    from xmail.config import load

    ctx = CliContext(load(config), io.StringIO(), io.StringIO(), io.StringIO())
    try:
        return records("example.com", client_settings(ctx.settings), dkim_keys(ctx, "example.com"))
    finally:
        ctx.close()


def payload(record: Record) -> Any:
    """What an operator who followed `xmailctl dns` publishes, as twisted.names data."""
    if record.rtype == "MX":
        preference, host = record.value  # type: ignore[misc]
        return dns.Record_MX(preference, host.rstrip(".").encode())
    if record.rtype == "TXT":
        return dns.Record_TXT(*[s.encode() for s in txt_strings(str(record.value))])
    if record.rtype == "CNAME":
        return dns.Record_CNAME(str(record.value).rstrip(".").encode())
    priority, weight, port, target = record.value  # type: ignore[misc]
    return dns.Record_SRV(priority, weight, port, target.rstrip(".").encode())


def publish(zone: Zone, rows: list[Record]) -> None:
    for r in rows:
        key = (r.name.rstrip(".").lower(), dns.__dict__[r.rtype])
        zone.records.setdefault(key, []).append(payload(r))


def report(out: str) -> dict[str, list[str]]:
    """what -> [status, what, name, type, expected, found]."""
    rows = [line.split("\t") for line in out.splitlines()]
    assert all(len(row) == 6 for row in rows), rows
    return {row[1]: row for row in rows}


def test_everything_published_is_ok(config: str, zone: Zone) -> None:
    rows = expected(config)
    publish(zone, rows)
    status, out, err = run("--config", config, "dns", "check", "example.com")
    assert (status, err) == (0, "")
    found = report(out)
    assert len(found) == len(rows) == 13  # MX, SPF, 2 DKIM, DMARC, 2 CNAME, 6 SRV
    assert {row[0] for row in found.values()} == {"ok"}
    # Every lookup went to the configured server.
    assert ("_dmarc.example.com", dns.TXT) in zone.asked and ("example.com", dns.MX) in zone.asked


def test_missing_and_different_records_are_reported(config: str, zone: Zone) -> None:
    rows = expected(config)
    keep = [r for r in rows if r.what not in ("DMARC", "SPF") and not r.what.startswith("DKIM")]
    publish(zone, keep)
    dkim_rows = [r for r in rows if r.what.startswith("DKIM")]
    # The first selector published right, the second with another key;
    # SPF too permissive; DMARC not published at all.  The domain also has
    # an unrelated TXT record beside SPF (site verification, say).
    publish(zone, dkim_rows[:1])
    zone.records[(dkim_rows[1].name.rstrip("."), dns.TXT)] = [dns.Record_TXT(b"v=DKIM1; k=ed25519; p=AAAA")]
    zone.records[("example.com", dns.TXT)] = [dns.Record_TXT(b"v=spf1 a mx ~all"),
                                              dns.Record_TXT(b"google-site-verification=xyz")]
    status, out, err = run("--config", config, "dns", "check", "example.com")
    assert status == 1 and err == ""
    found = report(out)
    assert found["DMARC"][0] == "missing"
    assert found["DMARC"][4:] == ["v=DMARC1; p=quarantine; rua=mailto:postmaster@example.com", "-"]
    assert found["SPF"][0] == "different"
    assert found["SPF"][4:] == ["v=spf1 mx -all", "v=spf1 a mx ~all"]
    assert found[dkim_rows[0].what][0] == "ok"
    bad = found[dkim_rows[1].what]
    assert bad[0] == "different" and bad[5] == "v=DKIM1; k=ed25519; p=AAAA"
    assert bad[2] == dkim_rows[1].name and bad[3] == "TXT"
    others = {row[0] for what, row in found.items() if what not in ("DMARC", "SPF", dkim_rows[1].what)}
    assert others == {"ok"}


def test_a_different_mx_and_a_huge_txt_answer(config: str, zone: Zone) -> None:
    rows = expected(config)
    publish(zone, [r for r in rows if r.rtype != "MX" and r.what != "DMARC"])
    zone.records[("example.com", dns.MX)] = [dns.Record_MX(10, b"mx.elsewhere.net")]
    # 5 kB of DMARC text in 20 strings: compared and shown bounded.
    huge = [b"v=DMARC1; p=none; " + b"x" * 200] + [b"y" * 250] * 19
    zone.records[("_dmarc.example.com", dns.TXT)] = [dns.Record_TXT(*huge)]
    status, out, _ = run("--config", config, "dns", "check", "example.com")
    found = report(out)
    assert status == 1
    assert found["MX"][0] == "different"
    assert found["MX"][4:] == ["10 mail.example.com.", "10 mx.elsewhere.net."]
    assert found["DMARC"][0] == "different" and len(found["DMARC"][5]) <= 603


def test_check_refuses_a_domain_that_is_not_hosted(config: str) -> None:
    status, out, err = run("--config", config, "dns", "check", "other.org")
    assert (status, out) == (1, "") and "other.org is not a hosted domain" in err


def test_dns_takes_one_domain_or_check_and_one_domain(config: str) -> None:
    status, _, err = run("--config", config, "dns", "example.com", "example.org")
    assert status == 1 and "usage: xmailctl dns DOMAIN | xmailctl dns check DOMAIN" in err


class FailingZone(Zone):
    """A server that answers SERVFAIL for one name (its backend is broken)."""

    def _lookup(self, name: bytes, cls: int, type: int, timeout: Any) -> Any:
        if name.lower().startswith(b"_dmarc."):
            return defer.fail(RuntimeError("backend down"))
        return super()._lookup(name, cls, type, timeout)


def test_a_failed_lookup_is_neither_ok_nor_missing(tmp_path: Path) -> None:
    from twisted.names import server

    from tests.support.server import in_reactor, reactor_running

    zone = FailingZone({})
    factory = server.DNSServerFactory(authorities=[zone])
    port = in_reactor(reactor_running().listenUDP, 0, dns.DNSDatagramProtocol(factory), interface="127.0.0.1")
    try:
        zone.port = port.getHost().port
        config = next(config_gen := _config(tmp_path, zone))
        publish(zone, [r for r in expected(config) if r.what != "DMARC"])
        status, out, _ = run("--config", config, "dns", "check", "example.com")
        found = report(out)
        assert status == 1
        assert found["DMARC"][0] == "failed"
        assert found["DMARC"][5] == "lookup failed: server failure (SERVFAIL)"
        assert found["MX"][0] == "ok"
        config_gen.close()
    finally:
        in_reactor(port.stopListening)
