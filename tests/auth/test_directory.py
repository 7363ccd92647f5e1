"""The directory on a real LMDB environment: domains, alias domains, users,
aliases, case-insensitivity, validation.  Another process changing the
directory while the daemon runs is tested in tests/test_cli.py."""

from __future__ import annotations

import dataclasses

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from passlib.hash import sha512_crypt
from zope.interface.verify import verifyObject

from xmail.auth import passwords
from xmail.auth.directory import Directory, normalize_address, normalize_domain
from xmail.auth.interfaces import DirectoryError, IDirectory
from xmail.config import Settings
from xmail.db.environment import IndexEnvironment


@pytest.fixture
def env(tmp_path):
    environment = IndexEnvironment(str(tmp_path / "index"))
    environment.open()
    yield environment
    environment.close()


@pytest.fixture
def directory(env, tmp_path):
    settings = Settings()
    settings = dataclasses.replace(settings, server=dataclasses.replace(settings.server,
                                                                        data_dir=str(tmp_path)))
    d = Directory(env, settings)
    d.add_domain("example.com")
    return d


def test_provides_idirectory(directory):
    assert verifyObject(IDirectory, directory)


def test_domains_are_case_insensitive_and_listed(directory):
    assert directory.is_local_domain("EXAMPLE.com")
    assert directory.is_local_domain("example.com.")
    assert not directory.is_local_domain("example.org")
    with pytest.raises(DirectoryError, match="already exists"):
        directory.add_domain("Example.COM")
    directory.add_domain("Example.ORG")
    directory.add_alias_domain("example.cn", "example.com")
    assert directory.list_domains() == [
        ("example.cn", "example.com"), ("example.com", None), ("example.org", None)]
    assert directory.is_local_domain("EXAMPLE.CN")


def test_unicode_domains_are_stored_in_idna_form(directory):
    assert directory.add_domain("Bücher.example") == "xn--bcher-kva.example"
    assert directory.is_local_domain("bücher.example")
    assert directory.is_local_domain("xn--bcher-kva.example")


def test_users_are_case_insensitive(directory):
    record = directory.add_user("Alice.Smith@Example.COM", password="secret pw")
    assert record.address == "alice.smith@example.com"
    assert directory.user("ALICE.SMITH@example.com") == record
    assert directory.resolve("Alice.Smith@EXAMPLE.com") == "alice.smith@example.com"
    with pytest.raises(DirectoryError, match="already exists"):
        directory.add_user("alice.smith@example.com", password="x")
    assert [r.address for r in directory.list_users()] == ["alice.smith@example.com"]


def test_password_is_stored_as_argon2id_and_never_shown(directory):
    directory.add_user("alice@example.com", password="secret pw")
    record, stored = directory.credentials("alice@example.com")
    assert stored.startswith("$argon2id$")
    assert passwords.verify("secret pw", stored).ok
    shown = directory.user_show("alice@example.com")
    assert shown["password_scheme"] == "argon2"
    assert "secret" not in repr(shown) and stored not in repr(shown)


def test_user_without_password_exists_but_has_no_hash(directory):
    directory.add_user("nopw@example.com")
    assert directory.credentials("nopw@example.com")[1] == ""
    assert directory.user_show("nopw@example.com")["password_scheme"] == "none"
    directory.set_password("nopw@example.com", "now one")
    assert passwords.verify("now one", directory.credentials("nopw@example.com")[1]).ok


def test_import_of_a_legacy_hash(directory):
    legacy = "{SHA512-CRYPT}" + sha512_crypt.hash("old secret")
    directory.add_user("old@example.com", password_hash=legacy)
    assert directory.credentials("old@example.com")[1] == legacy
    assert directory.user_show("old@example.com")["password_scheme"] == "{SHA512-CRYPT}"
    with pytest.raises(DirectoryError, match="unrecognised"):
        directory.add_user("bad@example.com", password_hash="not a hash")
    assert directory.user("bad@example.com") is None
    with pytest.raises(DirectoryError, match="not both"):
        directory.add_user("both@example.com", password="x", password_hash=legacy)
    with pytest.raises(DirectoryError):
        directory.set_password_hash("old@example.com", "$6$")
    directory.set_password_hash("old@example.com", "{PLAIN}plain text")
    assert directory.credentials("old@example.com")[1] == "{PLAIN}plain text"


def test_user_needs_an_existing_primary_domain(directory):
    with pytest.raises(DirectoryError, match="no such domain example.org"):
        directory.add_user("a@example.org", password="x")
    directory.add_alias_domain("example.cn", "example.com")
    with pytest.raises(DirectoryError, match="alias domain"):
        directory.add_user("a@example.cn", password="x")


def test_alias_domain_login_forms_and_send_as(directory):
    directory.add_alias_domain("Example.CN", "example.com")
    directory.add_user("alice@example.com", password="pw pw")
    directory.add_alias("info@example.com", "alice@example.com")
    for name in ("alice@example.com", "ALICE@EXAMPLE.CN", "info@example.com", "info@example.cn"):
        assert directory.resolve(name) == "alice@example.com", name
        assert directory.may_send_as("alice@example.com", name), name
    assert directory.resolve("bob@example.cn") is None
    assert not directory.may_send_as("alice@example.com", "bob@example.com")
    assert not directory.may_send_as("alice@example.com", "alice@example.org")


def test_alias_domain_rules(directory):
    with pytest.raises(DirectoryError, match="no such domain"):
        directory.add_alias_domain("example.cn", "example.net")
    directory.add_alias_domain("example.cn", "example.com")
    with pytest.raises(DirectoryError, match="itself an alias"):
        directory.add_alias_domain("example.hk", "example.cn")
    with pytest.raises(DirectoryError, match="already exists"):
        directory.add_alias_domain("example.cn", "example.com")
    with pytest.raises(DirectoryError, match="itself"):
        directory.add_alias_domain("example.com", "example.com")


def test_aliases(directory):
    directory.add_user("alice@example.com", password="pw pw")
    assert directory.add_alias("Sales@Example.com", "ALICE@example.com") == "alice@example.com"
    # An alias of an alias is stored as the user it resolves to.
    assert directory.add_alias("vertrieb@example.com", "sales@example.com") == "alice@example.com"
    assert directory.list_aliases() == [
        ("sales@example.com", "alice@example.com"), ("vertrieb@example.com", "alice@example.com")]
    assert directory.user_show("alice@example.com")["aliases"] == [
        "sales@example.com", "vertrieb@example.com"]
    with pytest.raises(DirectoryError, match="already exists"):
        directory.add_alias("sales@example.com", "alice@example.com")
    with pytest.raises(DirectoryError, match="is a user"):
        directory.add_alias("alice@example.com", "alice@example.com")
    with pytest.raises(DirectoryError, match="no such user"):
        directory.add_alias("x@example.com", "nobody@example.com")
    with pytest.raises(DirectoryError, match="no such domain"):
        directory.add_alias("x@example.org", "alice@example.com")
    with pytest.raises(DirectoryError, match="is an alias of"):
        directory.add_user("sales@example.com", password="x")
    directory.remove_alias("SALES@example.com")
    assert directory.resolve("sales@example.com") is None
    with pytest.raises(DirectoryError, match="no such alias"):
        directory.remove_alias("sales@example.com")


def test_removing_a_user_removes_its_aliases(directory):
    directory.add_user("alice@example.com", password="pw pw")
    directory.add_user("bob@example.com", password="pw pw")
    directory.add_alias("info@example.com", "alice@example.com")
    directory.add_alias("help@example.com", "bob@example.com")
    assert directory.remove_user("alice@example.com") == ["info@example.com"]
    assert directory.user("alice@example.com") is None
    assert directory.resolve("info@example.com") is None
    assert directory.list_aliases() == [("help@example.com", "bob@example.com")]
    with pytest.raises(DirectoryError, match="no such user"):
        directory.remove_user("alice@example.com")


def test_domain_removal_is_refused_while_something_refers_to_it(directory):
    directory.add_user("alice@example.com", password="pw pw")
    directory.add_alias_domain("example.cn", "example.com")
    with pytest.raises(DirectoryError, match="1 user"):
        directory.remove_domain("example.com")
    directory.remove_user("alice@example.com")
    with pytest.raises(DirectoryError, match="alias domains"):
        directory.remove_domain("example.com")
    directory.remove_domain("example.cn")
    directory.remove_domain("EXAMPLE.com")
    assert directory.list_domains() == []
    with pytest.raises(DirectoryError, match="no such domain"):
        directory.remove_domain("example.com")


def test_domain_removal_refused_while_aliases_exist(directory):
    directory.add_domain("example.org")
    directory.add_user("alice@example.org", password="pw pw")
    directory.add_alias("alice@example.com", "alice@example.org")
    with pytest.raises(DirectoryError, match="alias"):
        directory.remove_domain("example.com")


def test_enable_disable_quota_and_settings(directory):
    directory.add_user("alice@example.com", password="pw pw", quota_bytes=1000, quota_messages=10)
    directory.set_enabled("alice@example.com", False)
    record = directory.user("alice@example.com")
    assert (record.enabled, record.quota_bytes, record.quota_messages) == (False, 1000, 10)
    directory.set_enabled("alice@example.com", True)
    directory.set_quota("alice@example.com", quota_bytes=0)
    assert directory.user("alice@example.com").quota_bytes == 0
    assert directory.user("alice@example.com").quota_messages == 10
    directory.set_quota("alice@example.com", quota_messages=None)
    assert directory.user("alice@example.com").quota_messages is None
    assert directory.user("alice@example.com").quota_bytes == 0
    with pytest.raises(DirectoryError, match="unknown quota"):
        directory.set_quota("alice@example.com", quota_folders=1)
    directory.set_setting("alice@example.com", "Send_Save", "off")
    assert directory.setting("ALICE@example.com", "send_save") == "off"
    assert directory.setting("alice@example.com", "other", "dflt") == "dflt"
    assert directory.setting("nobody@example.com", "send_save", "on") == "on"
    directory.set_setting("alice@example.com", "send_save", "")
    assert directory.setting("alice@example.com", "send_save") is None
    with pytest.raises(DirectoryError, match="invalid setting name"):
        directory.set_setting("alice@example.com", "bad key", "x")
    with pytest.raises(DirectoryError, match="CR, LF"):
        directory.set_setting("alice@example.com", "k", "a\r\nb")
    with pytest.raises(DirectoryError, match="non-negative"):
        directory.add_user("neg@example.com", password="x", quota_bytes=-1)
    with pytest.raises(DirectoryError, match="no such user"):
        directory.set_enabled("nobody@example.com", False)


@pytest.mark.parametrize("bad", [
    "", "alice", "@example.com", "alice@", "alice@@example.com", "al ice@example.com",
    "alice\r\n@example.com", "alice@example.com\r\nRCPT TO:<x@y>", "al\0ice@example.com",
    ".alice@example.com", "alice.@example.com", "al..ice@example.com", "../../etc@example.com",
    "a/b@example.com", '"quoted"@example.com', "x" * 65 + "@example.com",
    "alice@" + "a" * 64 + ".com", "alice@exa_mple.com", "alice@-example.com",
    "alice@example..com", "alice@127.0.0.1", "alice@" + ("a" * 60 + ".") * 4 + "com",
])
def test_invalid_addresses_are_refused_with_a_reason(directory, bad):
    with pytest.raises(DirectoryError) as info:
        directory.add_user(bad, password="pw pw")
    assert str(info.value)
    assert directory.resolve(bad) is None
    assert directory.user(bad) is None
    assert directory.list_users() == []


def test_normalisation():
    assert normalize_address(" Alice+Tag@Example.COM ") == "alice+tag@example.com"
    assert normalize_address("o'brien@example.com") == "o'brien@example.com"
    assert normalize_domain("MAIL.Example.com.") == "mail.example.com"
    with pytest.raises(DirectoryError, match="longer than"):
        normalize_address("a" * 250 + "@example.com")



@settings(max_examples=300, deadline=None)
@given(st.one_of(st.text(max_size=80), st.emails().map(lambda e: e.upper())))
def test_normalize_address_returns_a_canonical_address_or_refuses(text):
    try:
        address = normalize_address(text)
    except DirectoryError:
        return
    assert normalize_address(address) == address
    assert address == address.lower() and address.isascii()
    assert not any(c in address for c in "\r\n\0/ ")
    local, _, domain = address.rpartition("@")
    assert 0 < len(local) <= 64 and 0 < len(domain) <= 253
