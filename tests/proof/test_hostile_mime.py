# -*- test-case-name: tests.proof.test_hostile_mime -*-
"""Issue 16 #1 proof, against a real `twistd -n xmail` (one worker).

Hostile messages — 1 MB of "<" in a text/html part, 1 MB of "<script ",
1 MB of plain text, a subject and a References field of about 0.9 MB each
(the header section limit is 1 MiB) — are accepted over SMTP with the 250
less than 1 s after the end of the data, and IMAP SEARCH BODY / TEXT /
SUBJECT over them answer in less than 1 s, while another IMAP session's
NOOPs, sent back to back the whole time, are each answered in less than
100 ms.  The old parser (quadratic regexes) needed 8 s for 100 kB of "<"
and froze the worker meanwhile.
"""

from __future__ import annotations

import imaplib
import smtplib
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.proof.support import NO_THROTTLE, Daemon

pytestmark = pytest.mark.timeout(300)

ALICE = "alice@example.com"
MB = 1_000_000
ACCEPT_SECONDS = 1.0
SEARCH_SECONDS = 1.0
NOOP_SECONDS = 0.1


def folded(unit: str, size: int) -> str:
    return "\r\n ".join([unit] * (size // (len(unit) + 3)))


def message(subject: str, body: str, ctype: str = "text/plain", extra: str = "") -> bytes:
    return (f"From: Mallory <m@evil.example>\r\nTo: {ALICE}\r\nSubject: {subject}\r\n{extra}"
            f"Content-Type: {ctype}; charset=utf-8\r\n\r\n{body}\r\n").encode()


def lines(unit: str, size: int) -> str:
    """size characters of unit repeated, in lines of at most 990 octets
    (the DATA line limit); HTML does not care where its lines break."""
    per_line = 990 // len(unit)
    count = size // len(unit)
    return "\r\n".join(unit * min(per_line, count - i) for i in range(0, count, per_line))


HOSTILE = {
    "html of '<'": message("lt", lines("<", MB), "text/html"),
    "html of '<script '": message("script", lines("<script ", MB), "text/html"),
    "plain text": message("plain", ("x" * 70 + "\r\n") * (MB // 72)),
    "subject of '(fwd) '": message(folded("(fwd) (fwd)", 900_000) + " end", "body"),
    "references": message("refs", "body", extra="References: " + folded("<a@b.example>", 900_000) + "\r\n"),
}


class NoopWatch:
    """A second IMAP session sending NOOP back to back in a thread; `worst()`
    is the slowest answer since the last `reset()`."""

    def __init__(self, port: int):
        self.client = imaplib.IMAP4("127.0.0.1", port)
        self.client.login(ALICE, PASSWORD)
        self.lock = threading.Lock()
        self.slowest = 0.0
        self.count = 0
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            start = time.perf_counter()
            assert self.client.noop()[0] == "OK"
            elapsed = time.perf_counter() - start
            with self.lock:
                self.slowest = max(self.slowest, elapsed)
                self.count += 1

    def reset(self) -> None:
        with self.lock:
            self.slowest, self.count = 0.0, 0

    def worst(self) -> tuple[float, int]:
        with self.lock:
            return self.slowest, self.count

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(10)
        self.client.logout()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: Any) -> Iterator[Daemon]:
    workdir = str(tmp_path_factory.mktemp("hostile"))
    daemon = Daemon(workdir, listeners=("smtp", "imap"), extra=NO_THROTTLE)
    daemon.ctl("domain", "add", "example.com")
    daemon.ctl("user", "add", ALICE, "--password-stdin", stdin=PASSWORD + "\n")
    daemon.start()
    yield daemon
    assert daemon.stop() == 0
    assert not daemon.tracebacks(), daemon.log_text()


@pytest.fixture(scope="module")
def watch(daemon: Daemon) -> Iterator[NoopWatch]:
    noop = NoopWatch(daemon.ports["imap"])
    yield noop
    noop.stop()


def deliver(port: int, data: bytes) -> float:
    """Seconds from the end of DATA to the 250."""
    with smtplib.SMTP("127.0.0.1", port, timeout=60) as s:
        s.ehlo("client.example")
        s.mail("m@evil.example")
        assert s.rcpt(ALICE)[0] == 250
        s.putcmd("data")
        assert s.getreply()[0] == 354
        s.send(smtplib.quotedata(data.decode()).encode() + b"\r\n.\r\n")
        start = time.perf_counter()
        code, text = s.getreply()
        elapsed = time.perf_counter() - start
        assert code == 250, text
        return elapsed


@pytest.mark.parametrize("name", list(HOSTILE))
def test_hostile_message_is_accepted_quickly(daemon: Daemon, watch: NoopWatch, name: str) -> None:
    watch.reset()
    elapsed = deliver(daemon.ports["smtp"], HOSTILE[name])
    slowest, count = watch.worst()
    assert elapsed < ACCEPT_SECONDS, f"{name}: 250 after {elapsed:.2f} s"
    assert count > 0 and slowest < NOOP_SECONDS, f"{name}: a NOOP took {slowest * 1e3:.0f} ms"


@pytest.mark.parametrize("criteria", [
    ("BODY", '"no such words"'), ("TEXT", '"no such words"'), ("SUBJECT", '"no such words"'),
    ("BODY", '"xxxxxxxx"'),
])
def test_search_over_hostile_messages_is_quick(daemon: Daemon, watch: NoopWatch,
                                               criteria: tuple[str, str]) -> None:
    client = imaplib.IMAP4("127.0.0.1", daemon.ports["imap"])
    try:
        client.login(ALICE, PASSWORD)
        typ, data = client.select("INBOX")
        assert typ == "OK" and int(data[0]) == len(HOSTILE), "deliveries above must come first"
        watch.reset()
        start = time.perf_counter()
        typ, data = client.search(None, *criteria)
        elapsed = time.perf_counter() - start
        slowest, count = watch.worst()
        assert typ == "OK"
        expected = [b"3"] if criteria[1] == '"xxxxxxxx"' else [b""]
        assert data == expected
        assert elapsed < SEARCH_SECONDS, f"SEARCH {criteria}: {elapsed:.2f} s"
        assert count > 0 and slowest < NOOP_SECONDS, f"a NOOP took {slowest * 1e3:.0f} ms"
    finally:
        client.logout()
