# -*- test-case-name: tests.autoconfig.test_cli -*-
"""`xmailctl dns DOMAIN`, run through xmail.cli.main on a real data directory."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.cli import hosting_config, run

from .conftest import PRODUCTION_TOML
from .test_dnszone import records


@pytest.fixture
def config(tmp_path: Path) -> str:
    return hosting_config(tmp_path, PRODUCTION_TOML)


def test_dns_prints_the_zone_of_a_hosted_domain(config: str) -> None:
    status, out, err = run("--config", config, "dns", "Example.COM")
    assert (status, err) == (0, "")
    found = {(name, rtype): data for name, _, rtype, data in records(out)}
    assert found[("example.com.", "MX")] == "10 mail.example.com."
    assert found[("_imaps._tcp.example.com.", "SRV")] == "0 1 993 mail.example.com."
    assert found[("_submissions._tcp.example.com.", "SRV")] == "0 1 465 mail.example.com."
    assert found[("autodiscover.example.com.", "CNAME")] == "mail.example.com."


def test_dns_for_an_alias_domain_and_ttl(config: str) -> None:
    status, out, _ = run("--config", config, "dns", "example.cn", "--ttl", "300")
    assert status == 0
    assert {ttl for _, ttl, _, _ in records(out)} == {300}
    assert ("example.cn.", 300, "MX", "10 mail.example.com.") in records(out)


@pytest.mark.parametrize("domain, message", [
    ("other.org", "other.org is not a hosted domain"),
    ("not a domain", "is not a domain name"),
])
def test_dns_refuses_what_is_not_hosted(config: str, domain: str, message: str) -> None:
    status, out, err = run("--config", config, "dns", domain)
    assert status == 1 and out == ""
    assert err.startswith("xmailctl: ") and message in err


def test_dns_is_listed_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run("--help")
    assert "dns" in capsys.readouterr().out
