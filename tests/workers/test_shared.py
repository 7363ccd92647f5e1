# -*- test-case-name: tests.workers.test_shared -*-
"""Unit tests of the cross-process pieces: shared tables, maildrop lock
files, notification datagrams, leader election.  Two instances on one file
stand for two workers; the lock and election tests use a real second
process where the kernel's cleanup is the point."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

import pytest
from twisted.internet import task

from tests.conftest import in_reactor, reactor_running
from tests.workers.daemon import wait_for
from xmail.db.leader import LeaderElection, leader_pid
from xmail.protocols.pop3.maildrop import FileMaildropLocks
from xmail.workers import shared
from xmail.workers.bus import NotifyChannel


@pytest.fixture
def run_dir(tmp_path: Any) -> str:
    path = str(tmp_path / "run")
    shared.create_files(path, 2)
    return path


def test_connection_caps_are_the_sum_over_workers(run_dir: str) -> None:
    path = os.path.join(run_dir, shared.PEER_CONNECTIONS)
    first = shared.SharedPeerConnections(3, shared.SlotCounters(path, 0))
    second = shared.SharedPeerConnections(3, shared.SlotCounters(path, 1))
    assert first.acquire("192.0.2.1", "imap") and first.acquire("192.0.2.1", "imap")
    assert second.acquire("192.0.2.1", "imap")
    assert not second.acquire("192.0.2.1", "imap") and not first.acquire("192.0.2.1", "imap")
    assert first.count("192.0.2.1", "imap") == 3
    # Other protocols and addresses have their own counts; IPv6 per /64.
    assert second.acquire("192.0.2.1", "pop3") and second.acquire("2001:db8::1", "imap")
    assert second.count("2001:db8::2", "imap") == 1
    # A worker releases only what it holds.
    second.release("192.0.2.9", "imap")
    first.release("192.0.2.1", "imap")
    assert second.acquire("192.0.2.1", "imap")
    # The supervisor forgets a dead worker's row; its successor starts at 0.
    shared.clear_worker_row(run_dir, 1)
    assert first.count("192.0.2.1", "imap") == 1
    successor = shared.SharedPeerConnections(3, shared.SlotCounters(path, 1))
    assert successor.acquire("192.0.2.1", "imap") and successor.acquire("192.0.2.1", "imap")
    assert not successor.acquire("192.0.2.1", "imap")


def test_user_connection_caps_ignore_case_across_workers(run_dir: str) -> None:
    path = os.path.join(run_dir, shared.USER_CONNECTIONS)
    first = shared.SharedUserConnections(1, shared.SlotCounters(path, 0))
    second = shared.SharedUserConnections(1, shared.SlotCounters(path, 1))
    assert first.acquire("Alice@Example.com", "imap")
    assert not second.acquire("alice@example.com", "imap")
    assert shared.SharedUserConnections(0, shared.SlotCounters(path, 1)).acquire("alice@example.com", "imap")


def test_failure_counts_are_shared_and_forgotten(run_dir: str) -> None:
    path = os.path.join(run_dir, shared.LOGIN_FAILURES)
    first = shared.SharedFailureCounts(path, forget_after=900.0)
    second = shared.SharedFailureCounts(path, forget_after=900.0)
    now = 1000.0
    assert first.add_failure("pair", "192.0.2.1 bob", now) == 1
    assert second.add_failure("pair", "192.0.2.1 bob", now + 1) == 2
    assert first.get("pair", "192.0.2.1 bob", now + 2) == (2, 0.0)
    assert first.get("ip", "192.0.2.1 bob", now + 2) == (0, 0.0)  # scopes are separate
    second.refuse("pair", "192.0.2.1 bob", now + 2000)
    # Refused: kept past forget_after until the refusal ends.
    assert first.get("pair", "192.0.2.1 bob", now + 1500) == (2, now + 2000)
    assert first.get("pair", "192.0.2.1 bob", now + 2000) == (0, 0.0)
    second.add_failure("account", "bob", now)
    first.reset("account", "bob")
    assert second.get("account", "bob", now) == (0, 0.0)


def test_trusted_pairs_are_shared_until_they_expire(run_dir: str) -> None:
    path = os.path.join(run_dir, shared.LOGIN_FAILURES)
    first = shared.SharedFailureCounts(path, forget_after=900.0)
    second = shared.SharedFailureCounts(path, forget_after=900.0)
    assert not second.trusted("192.0.2.1 bob", 1000.0)
    first.trust("192.0.2.1 bob", 1000.0 + 30 * 86400, 1000.0)
    first.trust("192.0.2.1 bob", 1000.0 + 30 * 86400, 1001.0)  # again: still one record
    assert second.trusted("192.0.2.1 bob", 5000.0) and not second.trusted("192.0.2.2 bob", 5000.0)
    assert not second.trusted("192.0.2.1 bob", 1000.0 + 30 * 86400)


def test_failure_table_stays_bounded(run_dir: str) -> None:
    counts = shared.SharedFailureCounts(os.path.join(run_dir, shared.LOGIN_FAILURES), 900.0)
    for i in range(shared.TABLE_RECORDS + 5000):
        counts.add_failure("ip", f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", float(i))
    assert len(counts) <= shared.TABLE_RECORDS
    newest = shared.TABLE_RECORDS + 4999
    assert counts.get("ip", f"10.{newest >> 16 & 255}.{newest >> 8 & 255}.{newest & 255}", newest) == (1, 0.0)


def test_daily_send_counter_is_shared_per_day(run_dir: str) -> None:
    path = os.path.join(run_dir, shared.DAILY_SENDS)
    now = [86400.0 * 20000 + 10]
    first = shared.SharedDailySendCounter(path, 3, clock=lambda: now[0])
    second = shared.SharedDailySendCounter(path, 3, clock=lambda: now[0])
    first.record("alice@example.com", 2)
    assert not second.reached("alice@example.com")
    second.record("alice@example.com")
    assert first.reached("alice@example.com") and not first.reached("bob@example.com")
    now[0] += 86400  # a new UTC day
    assert not first.reached("alice@example.com")
    assert not shared.SharedDailySendCounter(path, 0).reached("alice@example.com")


def test_recent_claims_are_taken_once_across_workers(run_dir: str) -> None:
    from xmail.protocols.imap.sync import RecentTracker

    path = os.path.join(run_dir, shared.RECENT_CLAIMS)
    first = RecentTracker(clock=lambda: 0.0, claims=shared.SharedRecentClaims(path))
    second = RecentTracker(clock=lambda: 0.0, claims=shared.SharedRecentClaims(path))
    key = ("alice@example.com", "INBOX", 7)
    assert not second.known(key)
    first.first_sight(key, [])
    assert second.known(key)
    assert second.claim(key, [1, 2, 3], take=False) == [1, 2, 3]  # EXAMINE leaves them
    assert first.claim(key, [1, 2, 3]) == [1, 2, 3]
    assert second.claim(key, [1, 2, 3, 4]) == [4]
    assert first.claim(key, [1, 2, 3, 4]) == []
    assert first.claimed(key) == 4 and first.unclaimed(key, [3, 4, 5, 6]) == 2
    # Another UIDVALIDITY is another folder.
    assert second.claim(("alice@example.com", "INBOX", 8), [1]) == [1]


HOLD_LOCK = """
import sys, time
from xmail.protocols.pop3.maildrop import FileMaildropLocks
locks = FileMaildropLocks(sys.argv[1])
assert locks.acquire("alice@example.com")
print("held", flush=True)
time.sleep(60)
"""


def test_maildrop_lock_is_seen_by_another_process_and_freed_by_its_death(tmp_path: Any) -> None:
    directory = str(tmp_path / "pop3")
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, directory], stdout=subprocess.PIPE)
    try:
        assert holder.stdout is not None and holder.stdout.readline() == b"held\n"
        locks = FileMaildropLocks(directory)
        assert not locks.acquire("alice@example.com")
        assert locks.acquire("bob@example.com")
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=10)
        assert locks.acquire("alice@example.com")
        # Two sessions of one process conflict too.
        assert not locks.acquire("alice@example.com")
        assert not FileMaildropLocks(directory).acquire("alice@example.com")
        locks.release("alice@example.com")
        locks.release("alice@example.com")  # no-op
        assert locks.acquire("alice@example.com")
        assert locks.held() == frozenset({"alice@example.com", "bob@example.com"})
    finally:
        holder.kill()
        holder.wait()


def test_notify_datagrams_reach_the_other_channels(tmp_path: Any) -> None:
    reactor = reactor_running()
    directory = str(tmp_path / ("a-long-directory-name" * 6))  # longer than a Unix socket path may be
    got: dict[str, list[bytes]] = {"a": [], "b": [], "c": []}
    channels = {name: NotifyChannel(directory, reactor, got[name].append) for name in got}
    for channel in channels.values():
        in_reactor(channel.open)
    try:
        in_reactor(channels["a"].broadcast, b"F12345678")
        wait_for(lambda: got["b"] and got["c"], timeout=5, what="datagrams")
        assert got["b"] == [b"F12345678"] == got["c"] and got["a"] == []
        # A dead peer's marker is removed by the next send.
        in_reactor(channels["c"].close)
        open(os.path.join(directory, "99999999.1"), "w").close()
        in_reactor(channels["a"].broadcast, b"Fx")
        wait_for(lambda: len(got["b"]) == 2, timeout=5, what="second datagram")
        assert sorted(os.listdir(directory)) == sorted([channels["a"].name, channels["b"].name])
    finally:
        for channel in channels.values():
            in_reactor(channel.close)


ELECT = """
import sys, time
from twisted.internet import task
from xmail.db.leader import LeaderElection
election = LeaderElection(sys.argv[1], task.Clock(), lambda: print("elected", flush=True))
election.try_lead()
time.sleep(60)
"""


def test_leadership_passes_when_the_leader_dies(tmp_path: Any) -> None:
    path = str(tmp_path / "leader.lock")
    leader = subprocess.Popen([sys.executable, "-c", ELECT, path], stdout=subprocess.PIPE)
    try:
        assert leader.stdout is not None and leader.stdout.readline() == b"elected\n"
        assert leader_pid(path) == leader.pid
        clock = task.Clock()
        elected: list[bool] = []
        follower = LeaderElection(path, clock, lambda: elected.append(True), interval=1.0)
        follower.start()
        clock.advance(3)
        assert not follower.leading and elected == []
        leader.send_signal(signal.SIGKILL)
        leader.wait(timeout=10)
        clock.advance(1)
        assert follower.leading and elected == [True] and leader_pid(path) == os.getpid()
        clock.advance(5)
        assert elected == [True]  # elected once
        follower.stop()
    finally:
        leader.kill()
        leader.wait()


# -- issue 16 #9: no eviction of refusals, keyed hashes, in-flight across workers ---------


def small_failure_table(tmp_path: Any, records: int = shared.PROBE) -> str:
    """A run dir whose failure table is one probe window: every key competes
    for the same records, as precomputed colliding names did."""
    run = str(tmp_path / "small")
    shared.create_files(run, 1)
    path = os.path.join(run, shared.LOGIN_FAILURES)
    with open(path, "r+b") as f:
        f.truncate(records * shared._RECORD.size)
    return path


def test_a_table_full_of_active_refusals_throttles_a_new_key(tmp_path: Any) -> None:
    counts = shared.SharedFailureCounts(small_failure_table(tmp_path), forget_after=900.0)
    now = 1000.0
    for i in range(shared.PROBE):
        counts.add_failure("pair", f"192.0.2.66 victim{i}", now)
        counts.refuse("pair", f"192.0.2.66 victim{i}", now + 900 + i)
    # Fail closed: the newcomer cannot be recorded, so it is refused until
    # the earliest refusal ends; nothing was evicted for it.
    assert counts.get("pair", "203.0.113.9 new", now + 1) == (0, now + 900)
    counts.add_failure("pair", "203.0.113.9 new", now + 1)
    assert len(counts) == shared.PROBE
    assert all(counts.get("pair", f"192.0.2.66 victim{i}", now + 2) == (1, now + 900 + i)
               for i in range(shared.PROBE))
    # Once a refusal ends its record may go, and the newcomer is counted.
    assert counts.add_failure("pair", "203.0.113.9 new", now + 900) == 1
    assert counts.get("pair", "203.0.113.9 new", now + 900) == (1, 0.0)


def test_eviction_never_drops_an_active_refusal(tmp_path: Any) -> None:
    counts = shared.SharedFailureCounts(small_failure_table(tmp_path), forget_after=900.0)
    now = 1000.0
    for i in range(4):  # the attacker's refused records
        for _ in range(10):
            counts.add_failure("pair", f"192.0.2.66 owner{i}", now)
        counts.refuse("pair", f"192.0.2.66 owner{i}", now + 900)
    for n in range(48):  # 48 failures under other names, as in the attack run
        counts.add_failure("ip", f"10.0.0.{n}", now + 1 + n)
    assert all(counts.get("pair", f"192.0.2.66 owner{i}", now + 60) == (10, now + 900) for i in range(4))


def test_the_hash_is_keyed_with_a_secret_made_at_each_start(tmp_path: Any) -> None:
    run = str(tmp_path / "run")
    shared.create_files(run, 1)
    first = shared.table_key(run)
    assert os.stat(os.path.join(run, shared.TABLE_KEY)).st_mode & 0o777 == 0o600
    shared.create_files(run, 1)
    second = shared.table_key(run)
    assert len(first) == 32 and first != second
    assert shared.key_hash("pair\0192.0.2.1 bob", first) != shared.key_hash("pair\0192.0.2.1 bob", second)
    # Not the unkeyed hash an attacker can compute offline.
    assert shared.key_hash("pair\0192.0.2.1 bob", second) != shared.key_hash("pair\0192.0.2.1 bob")


def test_logins_in_flight_count_across_workers(run_dir: str) -> None:
    """A parallel burst spread over two workers is throttled as one: three
    undelayed guesses in all, not three per worker."""
    from xmail.auth.throttle import LoginThrottle

    path = os.path.join(run_dir, shared.LOGIN_FAILURES)
    clock = task.Clock()
    workers = [LoginThrottle(clock, counts=shared.SharedFailureCounts(path, 900.0)) for _ in range(2)]
    admitted: list[Any] = []
    for n in range(6):
        workers[n % 2].admit("192.0.2.66", "owner@example.com").addBoth(admitted.append)
    assert len(admitted) == 3  # the other three wait for their delay
    assert workers[0].delayed + workers[1].delayed == 3
    for n, ticket in enumerate(admitted):
        workers[n % 2].finished(ticket, "fail")
    clock.advance(60)
    assert len(admitted) == 6
    assert workers[0].counts.flight("pair", "192.0.2.66 owner@example.com", 0, clock.seconds()) == 3
