# -*- test-case-name: tests.autoconfig.test_cli -*-
"""`xmailctl dns DOMAIN`, run through xmail.cli.main on a real data directory."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from xmail import cli

from .conftest import PRODUCTION_TOML
from .test_dnszone import records


def run(*argv: str) -> tuple[int, str, str]:
    stdout, stderr = io.StringIO(), io.StringIO()
    status = cli.main(list(argv), stdout=stdout, stderr=stderr, stdin=io.StringIO())
    return status, stdout.getvalue(), stderr.getvalue()


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "xmail.toml"
    path.write_text(PRODUCTION_TOML.replace("[server]\n", f'[server]\ndata_dir = "{tmp_path / "data"}"\n'))
    assert run("--config", str(path), "domain", "add", "example.com")[0] == 0
    assert run("--config", str(path), "domain", "alias", "example.cn", "--to", "example.com")[0] == 0
    return str(path)


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
