"""Per-domain thresholds and DMARC override; setting checks; `domain set`/`user set` validation."""

from __future__ import annotations

import pytest

from tests.support.daemon import run_ctl, write_config
from xmail.auth.directory import Directory
from xmail.config import FilterSettings, Settings
from xmail.db.environment import IndexEnvironment
from xmail.filter.policy import DOMAIN_KEYS, USER_KEYS, check_setting, dmarc_reject_to_junk, thresholds


@pytest.fixture
def directory(tmp_path):
    env = IndexEnvironment(str(tmp_path / "index"))
    env.open()
    directory = Directory(env, Settings())
    directory.add_domain("example.com")
    directory.add_alias_domain("example.net", "example.com")
    yield directory
    env.close()


def test_thresholds_come_from_the_domain_else_the_config(directory) -> None:
    for_user = thresholds(directory, FilterSettings(spam_score=6.0, reject_score=15.0))
    assert for_user("bob@example.com") == (6.0, 15.0)
    directory.set_domain_setting("example.com", "spam_score", "4.5")
    assert for_user("bob@example.com") == (4.5, 15.0)
    assert for_user("bob@example.net") == (4.5, 15.0)  # an alias domain answers its primary's
    directory.set_domain_setting("example.com", "reject_score", "3.0")
    assert for_user("bob@example.com") == (4.5, 4.5)  # never rejects below the Junk threshold
    assert for_user("x@elsewhere.org") == (6.0, 15.0)


def test_dmarc_override(directory) -> None:
    to_junk = dmarc_reject_to_junk(directory)
    assert to_junk("example.com") is False
    directory.set_domain_setting("example.com", "dmarc_reject", "junk")
    assert to_junk("example.com") is True and to_junk("example.net") is True


def test_setting_values_are_checked() -> None:
    assert check_setting(DOMAIN_KEYS, "spam_score", "7") == "7.0"
    assert check_setting(DOMAIN_KEYS, "dmarc_reject", "JUNK") == "junk"
    assert check_setting(USER_KEYS, "spam_digest", "weekly") == "weekly"
    assert check_setting(USER_KEYS, "spam_digest", "") == ""
    for table, key, bad in ((DOMAIN_KEYS, "spam_score", "nan"), (DOMAIN_KEYS, "spam_score", "-1"),
                            (DOMAIN_KEYS, "dmarc_reject", "maybe"), (USER_KEYS, "spam_digest", "hourly")):
        with pytest.raises(ValueError, match=key):
            check_setting(table, key, bad)


def test_the_cli_names_the_bad_key_or_value(tmp_path) -> None:
    config = write_config(tmp_path / "xmail.toml", tmp_path / "data", listeners=())
    run_ctl(config, "--init", "domain", "add", "example.com")
    run_ctl(config, "user", "add", "bob@example.com", "--password-stdin", stdin="A-long-password-1\n")
    run_ctl(config, "domain", "set", "example.com", "spam_score=5", "dmarc_reject=junk")
    assert run_ctl(config, "domain", "show", "example.com").stdout == "dmarc_reject\tjunk\nspam_score\t5.0\n"
    for args, needle in ((("domain", "set", "example.com", "color=red"), "unknown domain setting 'color'"),
                         (("domain", "set", "example.com", "spam_score=lots"), "spam_score must be"),
                         (("domain", "set", "nosuch.org", "spam_score=1"), "no such domain nosuch.org"),
                         (("user", "set", "bob@example.com", "spam_digest=hourly"), "spam_digest must be"),
                         (("spam", "block", "add", "--user", "bob@example.com", "not a pattern"),
                          "invalid pattern"),
                         (("spam", "allow", "add", "--domain", "nosuch.org", "@x.org"), "no such domain")):
        result = run_ctl(config, *args, check=False)
        assert result.returncode != 0 and needle in result.stderr, (args, result.stderr)
