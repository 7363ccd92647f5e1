"""`xmailctl dkim add|rotate|list|remove` and the DKIM records `xmailctl dns`
prints, run through xmail.cli.main on a real data directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from tests.autoconfig.conftest import PRODUCTION_TOML
from tests.autoconfig.test_dnszone import records
from tests.support.cli import hosting_config, run
from xmail.filter.dkimkeys import DkimKeyStore


@pytest.fixture
def config(tmp_path: Path) -> str:
    return hosting_config(tmp_path, PRODUCTION_TOML)


def dkim(config: str, *argv: str) -> tuple[int, str, str]:
    return run("--config", config, "dkim", *argv)


def listed(config: str, domain: str = "example.com") -> list[list[str]]:
    status, out, err = dkim(config, "list", domain)
    assert (status, err) == (0, "")
    return [line.split("\t") for line in out.splitlines()]


def dkim_txt(config: str, domain: str = "example.com") -> dict[str, str]:
    status, out, _ = run("--config", config, "dns", domain)
    assert status == 0
    return {name: data for name, _, rtype, data in records(out) if "._domainkey." in name and rtype == "TXT"}


def test_add_list_and_dns(config: str, tmp_path: Path) -> None:
    status, out, err = dkim(config, "add", "Example.COM")
    assert (status, err) == (0, "")
    [[selector, algorithm, state, created, dns_name]] = listed(config)
    assert out == (f"dkim example.com: selector {selector} ({algorithm}) added; publish {dns_name} "
                   "(see `xmailctl dns example.com`)\n")
    assert (algorithm, state, dns_name) == ("rsa", "active", f"{selector}._domainkey.example.com")
    assert created.endswith("Z") and selector.startswith("x")
    key_file = tmp_path / "data" / "dkim" / "example.com" / f"{selector}.key"
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(tmp_path / "data" / "dkim").st_mode) == 0o700
    txt = dkim_txt(config)
    store = DkimKeyStore(str(tmp_path / "data" / "dkim"))
    published = txt[f"{selector}._domainkey.example.com."]
    assert "".join(published[1:-1].split('" "')) == store.txt_record("example.com", selector)
    assert published.startswith('"v=DKIM1; k=rsa; p=')


def test_rsa_and_ed25519_together_and_rotation(config: str) -> None:
    assert dkim(config, "add", "example.com")[0] == 0
    assert dkim(config, "add", "example.com", "--algorithm", "ed25519")[0] == 0
    rows = listed(config)
    assert [(r[1], r[2]) for r in rows] == [("rsa", "active"), ("ed25519", "active")]
    old_rsa, ed = rows[0][0], rows[1][0]
    assert ed.endswith("e")
    status, out, _ = dkim(config, "rotate", "example.com")
    assert status == 0 and f"retired: {old_rsa}" in out
    rows = listed(config)
    states = {r[0]: (r[1], r[2]) for r in rows}
    new_rsa = next(name for name in states if name not in (old_rsa, ed))
    assert states == {old_rsa: ("rsa", "retired"), ed: ("ed25519", "active"), new_rsa: ("rsa", "active")}
    # The retired selector stays published until removed.
    assert set(dkim_txt(config)) == {f"{s}._domainkey.example.com." for s in (old_rsa, ed, new_rsa)}
    status, _, err = dkim(config, "remove", "example.com", new_rsa)
    assert status == 1 and "is active" in err
    status, out, err = dkim(config, "remove", "example.com", old_rsa)
    assert (status, err) == (0, "") and f"selector {old_rsa} removed" in out
    assert [r[0] for r in listed(config)] == [ed, new_rsa]
    assert set(dkim_txt(config)) == {f"{s}._domainkey.example.com." for s in (ed, new_rsa)}


def test_alias_domains_have_their_own_keys(config: str) -> None:
    assert dkim(config, "add", "example.cn", "--algorithm", "ed25519")[0] == 0
    assert [r[4].endswith("._domainkey.example.cn") for r in listed(config, "example.cn")] == [True]
    assert listed(config) == []


@pytest.mark.parametrize("argv, message", [
    (("add", "other.org"), "other.org is not a hosted domain"),
    (("rotate", "other.org"), "other.org is not a hosted domain"),
    (("list", "other.org"), "other.org is not a hosted domain"),
    (("add", "not a domain"), "'not a domain' is not a domain name"),
    (("remove", "example.com", "x20260101"), "example.com has no DKIM selector 'x20260101'"),
])
def test_errors_name_the_domain(config: str, argv: tuple[str, ...], message: str) -> None:
    status, out, err = dkim(config, *argv)
    assert (status, out) == (1, "")
    assert err.startswith("xmailctl: ") and message in err


def test_an_unknown_algorithm_is_a_usage_error(config: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        dkim(config, "add", "example.com", "--algorithm", "dsa")
    assert caught.value.code == 2 and "invalid choice: 'dsa'" in capsys.readouterr().err


def test_list_as_csv(config: str) -> None:
    assert dkim(config, "add", "example.com")[0] == 0
    status, out, _ = dkim(config, "list", "example.com", "--csv")
    lines = out.splitlines()
    assert status == 0 and lines[0] == "selector,algorithm,state,created,dns_name"
    assert len(lines) == 2 and lines[1].split(",")[1:3] == ["rsa", "active"]


def test_changes_are_in_the_admin_log_and_list_is_not(config: str) -> None:
    assert dkim(config, "add", "example.com")[0] == 0
    assert dkim(config, "list", "example.com")[0] == 0
    status, out, _ = run("--config", config, "log", "admin")
    assert status == 0
    assert "dkim add example.com" in out and "dkim list" not in out
