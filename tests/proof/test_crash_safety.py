# -*- test-case-name: tests.proof.test_crash_safety -*-
"""Crash safety: `kill -9` in the middle of an SMTP burst loses nothing.

A real `twistd -n xmail --config FILE` daemon takes a burst of messages for
one local user from several concurrent smtplib clients, each message marked
with a unique `X-Proof-Token` header.  Once some of the burst has been
acknowledged the daemon gets SIGKILL while the clients are still sending.
It is restarted on the same data directory, stopped cleanly, and then the
data directory is examined in this process with a MailStore in synchronous
mode (no daemon touches it any more).

"Consistent" means, for the user's INBOX:

1. every record in the index has its message file, whose size is the
   record's RFC822.SIZE (the CRLF invariant) and which holds the token;
2. the folder status (message count, size) agrees with the records;
3. a file in cur/ or new/ without a record may exist only as the leftover
   of a delivery cut short before its index commit (no 250 was sent for
   it, or it is a duplicate); `reindex` adopts such files and must keep
   every record (removed == 0, skipped == 0), after which index and files
   are one to one;
4. after that, every token that got `250` is in the folder once or twice,
   and no token is there more than twice.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import smtplib
import threading
from collections import Counter
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.proof.support import Daemon, wait_until
from xmail import tls
from xmail.config import parse

pytestmark = pytest.mark.timeout(180)

USER = "alice@example.com"
CLIENTS = 6
KILL_AFTER = 40  # acknowledged messages before SIGKILL
TOKEN = re.compile(rb"^X-Proof-Token: (\S+)\r$", re.MULTILINE)


def message(token: str) -> bytes:
    body = "".join(f"line {i} of {token} {'x' * 60}\r\n" for i in range(40))
    return (f"From: sender@remote.test\r\nTo: {USER}\r\nSubject: burst {token}\r\n"
            f"Message-ID: <{token}@remote.test>\r\nX-Proof-Token: {token}\r\n\r\n{body}").encode()


class Burst:
    """CLIENTS threads sending until the daemon dies (or `limit` each)."""

    def __init__(self, port: int, limit: int = 400):
        self.port = port
        self.limit = limit
        self.acked: list[str] = []
        self.attempted: list[str] = []
        self.errors: list[str] = []
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._client, args=(n,), daemon=True) for n in range(CLIENTS)]

    def start(self) -> None:
        for t in self.threads:
            t.start()

    def join(self) -> None:
        for t in self.threads:
            t.join(timeout=60)
            assert not t.is_alive(), "an SMTP client hung after the kill"

    def count(self) -> int:
        with self.lock:
            return len(self.acked)

    def _client(self, n: int) -> None:
        try:
            client = smtplib.SMTP("127.0.0.1", self.port, timeout=20)
        except OSError as e:
            with self.lock:
                self.errors.append(f"connect: {e}")
            return
        try:
            for i in range(self.limit):
                token = f"t{n}-{i}"
                with self.lock:
                    self.attempted.append(token)
                refused = client.sendmail("sender@remote.test", [USER], message(token))
                assert refused == {}
                with self.lock:
                    self.acked.append(token)
        except (OSError, smtplib.SMTPException) as e:
            # Expected once the daemon is killed.
            with self.lock:
                self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            try:
                client.close()
            except OSError:
                pass


def inbox_files(data_dir: str) -> dict[str, str]:
    """Base name -> path of every message file in INBOX's cur/ and new/."""
    root = os.path.join(data_dir, "mail", "example.com", "alice")
    files = {}
    for sub in ("cur", "new"):
        for entry in os.listdir(os.path.join(root, sub)):
            if not entry.startswith("."):
                files.setdefault(entry.split(":2,")[0], os.path.join(root, sub, entry))
    return files


def tokens_of(paths: list[str]) -> Counter[str]:
    found: Counter[str] = Counter()
    for path in paths:
        with open(path, "rb") as f:
            tokens = TOKEN.findall(f.read())
        assert len(tokens) == 1, (path, tokens)
        found[tokens[0].decode()] += 1
    return found


def open_store(daemon: Daemon) -> tuple[Any, Any]:
    from xmail.auth.directory import Directory
    from xmail.config import load
    from xmail.db.environment import IndexEnvironment
    from xmail.store.mailstore import MailStore

    settings = load(daemon.config)
    env = IndexEnvironment(settings.path("index"))
    env.open()
    return env, MailStore(env, settings, Directory(env, settings), reactor=None)


def test_kill_9_mid_burst_loses_no_acknowledged_message(make_daemon: Any) -> None:
    daemon = make_daemon(listeners=("smtp",), workers=2)
    daemon.ctl("domain", "add", "example.com")
    daemon.ctl("user", "add", USER, "--password-stdin", stdin="pw-not-used-here\n")
    ports = daemon.start()
    burst = Burst(ports["smtp"])
    burst.start()
    wait_until(lambda: burst.count() >= KILL_AFTER, timeout=90, what=f"{KILL_AFTER} acknowledged messages")
    daemon.kill9()
    burst.join()
    acked = set(burst.acked)
    assert len(acked) >= KILL_AFTER
    # The kill happened mid-burst: clients were cut off, not finished.
    assert len(burst.errors) == CLIENTS, burst.errors

    # Restart on the same data directory: it must come up and take mail again.
    ports = daemon.start()
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=20) as client:
        assert client.sendmail("sender@remote.test", [USER], message("after-restart")) == {}
    assert not daemon.tracebacks(), daemon.log_text()
    assert daemon.stop() == 0

    env, store = open_store(daemon)
    try:
        folder = store.mailbox(USER).folder("INBOX")
        records = folder.records()
        files = inbox_files(daemon.data_dir)
        # 1. every record has its file, with the record's size and a token
        for record in records:
            path = folder.message_path(record.uid)
            assert os.path.exists(path), f"UID {record.uid} indexed but {path} is missing"
            assert os.path.getsize(path) == record.size, (record, os.path.getsize(path))
            assert record.filename in files
        # 2. folder counters agree with the records
        status = folder.status()
        assert status.messages == len(records)
        assert status.size == sum(r.size for r in records)
        assert len({r.uid for r in records}) == len(records)
        # 3. unindexed files are crash leftovers that reindex adopts
        orphans = set(files) - {r.filename for r in records}
        counts = store.reindex(USER).result
        assert counts == {"kept": len(records), "new": len(orphans), "removed": 0, "skipped": 0}, counts
        records = folder.records()
        files = inbox_files(daemon.data_dir)
        assert sorted(r.filename for r in records) == sorted(files)
        assert folder.status().messages == len(records) == len(files)
        # 4. nothing acknowledged is lost, nothing is there more than twice
        found = tokens_of([folder.message_path(r.uid) for r in records])
    finally:
        env.close()
    lost = sorted(acked - set(found))
    assert not lost, f"{len(lost)} acknowledged messages lost: {lost[:20]}"
    assert max(found.values()) <= 2, found.most_common(5)
    assert found["after-restart"] == 1
    # Anything stored was at least attempted (no phantom messages).
    assert set(found) - {"after-restart"} <= set(burst.attempted)
    print(f"acked={len(acked)} attempted={len(burst.attempted)} stored={sum(found.values())} "
          f"orphans_adopted={len(orphans)} duplicates={sum(1 for v in found.values() if v > 1)}")


def test_restart_after_kill_9_keeps_uids_stable(make_daemon: Any) -> None:
    """UIDs handed out before the crash stay the same after the restart (an
    IMAP client's cache stays valid) and new mail gets higher UIDs."""
    daemon = make_daemon(listeners=("smtp",), workers=2)
    daemon.ctl("domain", "add", "example.com")
    daemon.ctl("user", "add", USER, "--password-stdin", stdin="pw-not-used-here\n")
    ports = daemon.start()
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=20) as client:
        for i in range(5):
            client.sendmail("sender@remote.test", [USER], message(f"before-{i}"))
    daemon.kill9()
    env, store = open_store(daemon)
    try:
        before = {r.uid: r.filename for r in store.mailbox(USER).folder("INBOX").records()}
        validity = store.mailbox(USER).folder("INBOX").status().uidvalidity
    finally:
        env.close()
    assert len(before) == 5
    ports = daemon.start()
    with smtplib.SMTP("127.0.0.1", ports["smtp"], timeout=20) as client:
        client.sendmail("sender@remote.test", [USER], message("after"))
    assert daemon.stop() == 0
    env, store = open_store(daemon)
    try:
        folder = store.mailbox(USER).folder("INBOX")
        after = {r.uid: r.filename for r in folder.records()}
        assert folder.status().uidvalidity == validity
    finally:
        env.close()
    assert {uid: name for uid, name in after.items() if uid in before} == before
    (new_uid,) = set(after) - set(before)
    assert new_uid > max(before)


def _generate_certificate(data_dir: str, barrier: Any, results: Any) -> None:
    # Imports at module level: a forked child must not need the import lock.
    settings = parse(f'[server]\ndata_dir = "{data_dir}"\n', "<test>")
    barrier.wait()
    try:
        cert_path, key_path = tls.ensure_certificate(settings)
        with open(cert_path, "rb") as f:
            cert = x509.load_pem_x509_certificate(f.read())
        with open(key_path, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), None)
        same = cert.public_key().public_numbers() == key.public_key().public_numbers()
        results.put("ok" if same else "certificate and key do not match")
    except Exception as e:
        results.put(f"{type(e).__name__}: {e}")


def test_workers_generating_the_certificate_together(tmp_path: Any) -> None:
    """What each worker of a fresh `workers = N` daemon does at start: every
    process must end up with a certificate and the key that belongs to it."""
    context = multiprocessing.get_context("fork")
    outcomes = []
    for round_ in range(5):
        data_dir = str(tmp_path / f"data{round_}")
        barrier, results = context.Barrier(4), context.Queue()
        processes = [context.Process(target=_generate_certificate, args=(data_dir, barrier, results))
                     for _ in range(4)]
        for process in processes:
            process.start()
        for process in processes:
            process.join(timeout=60)
        outcomes += [results.get(timeout=10) for _ in processes]
    assert outcomes == ["ok"] * len(outcomes), outcomes
