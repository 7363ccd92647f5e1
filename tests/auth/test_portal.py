"""The shared Portal of a running server (conftest `server` fixture): what
every protocol calls, `portal.login(UsernamePassword(...), None, IMailAccount)`."""

from __future__ import annotations

import time

import pytest
from passlib.hash import sha512_crypt
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from zope.interface.verify import verifyObject

from tests.conftest import PASSWORD
from xmail.auth.interfaces import AccountDisabled, IMailAccount
from xmail.store.interfaces import IMailbox


def login(server, name, password):
    return server.call(server.ctx.portal.login, UsernamePassword(name, password), None, IMailAccount)


@pytest.mark.parametrize("name, password", [
    (b"alice@example.com", PASSWORD.encode()),
    ("alice@example.com", PASSWORD),
    ("Alice@EXAMPLE.com", PASSWORD.encode()),
])
def test_login_hands_out_a_mail_account(server, name, password):
    interface, avatar, logout = login(server, name, password)
    assert interface is IMailAccount
    assert verifyObject(IMailAccount, avatar)
    assert avatar.address == "alice@example.com"
    assert avatar.record.address == "alice@example.com" and avatar.record.enabled
    assert verifyObject(IMailbox, avatar.mailbox)
    assert avatar.mailbox.address == "alice@example.com"
    names = [info.name for info in server.call(avatar.mailbox.list_folders)]
    assert names[0] == "INBOX" and {"Sent", "Drafts", "Trash", "Junk", "Archive", "Recycle"} <= set(names)
    logout()


def test_login_provisions_a_user_added_without_a_mailbox(server):
    # A user added by the directory alone (as an import script might) gets
    # its folders at first login.
    server.ctx.directory.add_user("carol@example.com", password=PASSWORD)
    _, avatar, _ = login(server, b"carol@example.com", PASSWORD.encode())
    assert avatar.mailbox.address == "carol@example.com"
    assert "Sent" in [info.name for info in server.call(avatar.mailbox.list_folders)]


def test_alias_and_alias_domain_logins(server):
    server.ctx.directory.add_alias_domain("example.cn", "example.com")
    server.ctx.directory.add_alias("info@example.com", "alice@example.com")
    for name in (b"info@example.com", b"ALICE@example.cn", b"info@example.cn"):
        assert login(server, name, PASSWORD.encode())[1].address == "alice@example.com"


@pytest.mark.parametrize("name, password", [
    (b"alice@example.com", b"wrong"),
    (b"nobody@example.com", PASSWORD.encode()),
    (b"alice@example.com\xff", PASSWORD.encode()),
    (b"alice@example.com", b"\xff\xfe"),
    (b"", b""),
])
def test_bad_logins_fail_with_unauthorized_login(server, name, password):
    with pytest.raises(UnauthorizedLogin):
        login(server, name, password)


def test_disabled_user(server):
    server.ctx.directory.set_enabled("bob@example.com", False)
    with pytest.raises(AccountDisabled):
        login(server, b"bob@example.com", PASSWORD.encode())
    server.ctx.directory.set_enabled("bob@example.com", True)
    assert login(server, b"bob@example.com", PASSWORD.encode())[1].address == "bob@example.com"


def test_imported_legacy_hash_is_upgraded_through_the_running_server(server):
    legacy = "{SHA512-CRYPT}" + sha512_crypt.hash("old pw")
    server.ctx.directory.add_user("old@example.com", password_hash=legacy)
    assert login(server, b"old@example.com", b"old pw")[1].address == "old@example.com"
    checker = server.ctx.portal.checker
    deadline = time.monotonic() + 10
    while server.ctx.directory.credentials("old@example.com")[1] == legacy:
        assert time.monotonic() < deadline, "the hash was not upgraded"
        time.sleep(0.01)
    assert server.ctx.directory.credentials("old@example.com")[1].startswith("$argon2id$")
    assert checker.rehashed == 1
