"""The credentials checker without any protocol: real directory on a real
LMDB environment, the shared test reactor, real hashing on the verifier pool."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from passlib.hash import bcrypt, md5_crypt
from twisted.cred.credentials import UsernamePassword
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import task

from tests.conftest import in_reactor, reactor_running
from xmail.auth import checker as checker_module
from xmail.auth import passwords
from xmail.auth.checker import DirectoryChecker, VerifierPool
from xmail.auth.directory import Directory
from xmail.auth.interfaces import AccountDisabled, LoginUnavailable
from xmail.config import Settings
from xmail.db.environment import IndexEnvironment

PASSWORD = "correct horse battery"


@pytest.fixture
def directory(tmp_path):
    env = IndexEnvironment(str(tmp_path / "index"), reactor=reactor_running())
    env.open()
    env.start_writer()
    settings = Settings()
    settings = dataclasses.replace(settings, server=dataclasses.replace(settings.server,
                                                                        data_dir=str(tmp_path)))
    d = Directory(env, settings)
    d.add_domain("example.com")
    d.add_alias_domain("example.cn", "example.com")
    d.add_user("alice@example.com", password=PASSWORD)
    d.add_alias("info@example.com", "alice@example.com")
    yield d
    env.close()


@pytest.fixture
def clock():
    return task.Clock()


@pytest.fixture
def checker(directory, clock):
    return DirectoryChecker(directory, reactor_running(), clock=clock)


def login(checker, name, password):
    return in_reactor(checker.requestAvatarId, UsernamePassword(name, password))


@pytest.mark.parametrize("name", [
    "alice@example.com", b"alice@example.com", "ALICE@Example.COM", "alice@example.cn",
    "info@example.com", b"INFO@example.cn", " alice@example.com ",
])
def test_every_login_form_gives_the_canonical_address(checker, name):
    assert login(checker, name, PASSWORD) == "alice@example.com"
    assert login(checker, name, PASSWORD.encode()) == "alice@example.com"


@pytest.mark.parametrize("name, password", [
    ("alice@example.com", "wrong"),
    ("alice@example.com", ""),
    ("bob@example.com", PASSWORD),
    ("alice", PASSWORD),
    ("alice@example.org", PASSWORD),
    (b"alice@example.com\xff", PASSWORD),
    (b"\xc3\x28@example.com", PASSWORD),
    ("alice@example.com", b"correct horse \xff"),
    ("alice@example.com", PASSWORD.encode("utf-16")),
    ("alice@example.com", "x" * 5000),
    ("a" * 5000 + "@example.com", PASSWORD),
    ("alice@example.com\r\n", PASSWORD + "\r\n"),
])
def test_bad_credentials_fail_plainly(checker, name, password):
    with pytest.raises(UnauthorizedLogin) as info:
        login(checker, name, password)
    assert not isinstance(info.value, AccountDisabled)


def test_user_without_password_cannot_log_in(checker, directory):
    directory.add_user("nopw@example.com")
    with pytest.raises(UnauthorizedLogin):
        login(checker, "nopw@example.com", "")
    with pytest.raises(UnauthorizedLogin):
        login(checker, "nopw@example.com", "anything")


def test_disabled_user_fails_only_after_the_right_password(checker, directory):
    directory.set_enabled("alice@example.com", False)
    with pytest.raises(AccountDisabled):
        login(checker, "info@example.cn", PASSWORD)
    with pytest.raises(UnauthorizedLogin) as info:
        login(checker, "alice@example.com", "wrong")
    assert not isinstance(info.value, AccountDisabled)
    directory.set_enabled("alice@example.com", True)
    assert login(checker, "alice@example.com", PASSWORD) == "alice@example.com"


class CountingPool:
    """The real pool, counting what it is given to run."""

    def __init__(self, pool):
        self.pool = pool
        self.jobs = []

    def submit(self, fn, *args):
        self.jobs.append(fn.__name__)
        return self.pool.submit(fn, *args)


def test_a_disabled_account_is_verified_like_a_wrong_password(checker, directory):
    """Issue 16 #10: with the right password cached, a disabled account
    used to answer from the cache (1 ms) and a wrong password only after
    the hash (23 ms).  Both now take one full verification."""
    assert login(checker, "alice@example.com", PASSWORD) == "alice@example.com"  # cached
    directory.set_enabled("alice@example.com", False)
    pool = checker.pool = CountingPool(checker.pool)
    with pytest.raises(AccountDisabled):
        login(checker, "alice@example.com", PASSWORD)
    with pytest.raises(UnauthorizedLogin) as info:
        login(checker, "alice@example.com", "wrong")
    assert not isinstance(info.value, AccountDisabled)
    assert pool.jobs == ["verify", "verify"]


def test_hashing_never_runs_on_the_reactor_thread(checker, monkeypatch):
    threads = []
    real_verify = passwords.verify

    def recording_verify(password, stored):
        threads.append(threading.current_thread().name)
        return real_verify(password, stored)

    monkeypatch.setattr(passwords, "verify", recording_verify)
    assert login(checker, "alice@example.com", PASSWORD) == "alice@example.com"
    with pytest.raises(UnauthorizedLogin):
        login(checker, "alice@example.com", "wrong")
    assert threads == ["xmail-verifier", "xmail-verifier"]


class RefusingPool:
    """Stands in for the verifier pool to prove a login came from the cache."""

    def submit(self, fn, *args):
        raise AssertionError("verification was not expected")


def test_successful_logins_are_cached_briefly(checker, directory, clock):
    assert login(checker, "alice@example.com", PASSWORD) == "alice@example.com"
    pool, checker.pool = checker.pool, RefusingPool()
    # Another connection of the same client, any login form: no hashing.
    for name in ("alice@example.com", "ALICE@example.cn", b"info@example.com"):
        assert login(checker, name, PASSWORD) == "alice@example.com"
    # A wrong password is never answered from the cache.
    with pytest.raises(AssertionError):
        login(checker, "alice@example.com", "wrong")
    # Disabling takes effect at once even for a cached password, and the
    # cache is not consulted for a disabled account (issue 16 #10): the
    # refusing pool proves the password went to the verifier.
    directory.set_enabled("alice@example.com", False)
    with pytest.raises(AssertionError):
        login(checker, "alice@example.com", PASSWORD)
    directory.set_enabled("alice@example.com", True)
    assert login(checker, "alice@example.com", PASSWORD) == "alice@example.com"
    # After CACHE_SECONDS the password is checked again.
    clock.advance(checker_module.CACHE_SECONDS + 1)
    with pytest.raises(AssertionError):
        login(checker, "alice@example.com", PASSWORD)
    checker.pool = pool
    assert login(checker, "alice@example.com", PASSWORD) == "alice@example.com"


def test_a_password_change_invalidates_the_cache(checker, directory):
    assert login(checker, "alice@example.com", PASSWORD) == "alice@example.com"
    directory.set_password("alice@example.com", "new password")
    with pytest.raises(UnauthorizedLogin):
        login(checker, "alice@example.com", PASSWORD)
    assert login(checker, "alice@example.com", "new password") == "alice@example.com"


def test_the_cache_is_bounded(directory, clock):
    small = DirectoryChecker(directory, reactor_running(), clock=clock, cache_size=2)
    for i in range(3):
        directory.add_user(f"u{i}@example.com", password=PASSWORD)
        assert login(small, f"u{i}@example.com", PASSWORD) == f"u{i}@example.com"
    assert len(small._cache) == 2


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.01)


@pytest.mark.parametrize("legacy", [
    lambda pw: md5_crypt.hash(pw),
    lambda pw: "{PLAIN}" + pw,
    lambda pw: bcrypt.using(rounds=4).hash(pw),
])
def test_legacy_hash_is_replaced_after_a_successful_login(checker, directory, legacy):
    stored = legacy("old password")
    directory.add_user("old@example.com", password_hash=stored)
    with pytest.raises(UnauthorizedLogin):
        login(checker, "old@example.com", "wrong")
    assert directory.credentials("old@example.com")[1] == stored  # no rehash on failure
    assert login(checker, "old@example.com", "old password") == "old@example.com"
    _wait_for(lambda: directory.credentials("old@example.com")[1] != stored)
    new_hash = directory.credentials("old@example.com")[1]
    assert new_hash.startswith("$argon2id$v=19$m=19456,t=2,p=1$")
    assert passwords.verify("old password", new_hash) == passwords.Verification(True, None)
    assert checker.rehashed == 1
    # The new hash works from a fresh checker (no cache) too.
    fresh = DirectoryChecker(directory, reactor_running())
    assert login(fresh, "old@example.com", "old password") == "old@example.com"
    assert fresh.rehashed == 0


def test_rehash_does_not_undo_a_concurrent_password_change(directory):
    stored = md5_crypt.hash("old password")
    directory.add_user("old@example.com", password_hash=stored)
    directory.set_password("old@example.com", "changed meanwhile")
    changed = directory.credentials("old@example.com")[1]
    replaced = directory.env.write_sync(
        lambda txn: directory.replace_hash_txn(txn, "old@example.com", stored, "$argon2id$x"))
    assert replaced is False
    assert directory.credentials("old@example.com")[1] == changed


def test_bcrypt_over_72_bytes_is_a_failed_login(checker, directory):
    directory.add_user("blf@example.com", password_hash="{BLF-CRYPT}" + bcrypt.using(rounds=4).hash("a" * 72))
    with pytest.raises(UnauthorizedLogin):
        login(checker, "blf@example.com", "a" * 73)
    assert login(checker, "blf@example.com", "a" * 72) == "blf@example.com"


def test_a_full_queue_answers_a_temporary_failure(directory):
    busy = DirectoryChecker(directory, reactor_running(), workers=1, max_pending=1)
    release = threading.Event()
    started = threading.Event()

    def block():
        started.set()
        release.wait(10)

    in_reactor(lambda: busy.pool.submit(block).addErrback(lambda f: None) and None)
    assert started.wait(10)
    try:
        # The worker is busy; one login may wait in the queue, the next is refused.
        first = []
        credentials = UsernamePassword("alice@example.com", PASSWORD)
        in_reactor(lambda: first.append(busy.requestAvatarId(credentials)))
        with pytest.raises(LoginUnavailable):
            login(busy, "alice@example.com", PASSWORD)
    finally:
        release.set()
    result = []
    first[0].addBoth(result.append)
    _wait_for(lambda: result)
    assert result == ["alice@example.com"]


def test_verifier_pool_threads_exit_when_idle(monkeypatch):
    monkeypatch.setattr(checker_module, "WORKER_IDLE_SECONDS", 0.05)
    pool = VerifierPool(reactor_running(), workers=2, max_pending=10)
    results = [in_reactor(pool.submit, lambda x: x * 2, i) for i in range(4)]
    assert results == [0, 2, 4, 6]
    _wait_for(lambda: pool._threads == 0)
