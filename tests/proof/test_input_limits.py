# -*- test-case-name: tests.proof.test_input_limits -*-
"""Input limits against a real `twistd -n xmail` subprocess (one worker).

Memory: a 100 MB command line without CRLF (SMTP, POP3, IMAP), a 100 MB
line inside SMTP DATA, a `{4294967295}` synchronizing literal and 100 MB of
a `{4294967295+}` non-synchronizing one (IMAP) must not grow the server's
resident memory (VmRSS from /proc/PID/status, sampled every 20 ms while the
bytes flow) by more than MAX_GROWTH_KB over the warmed-up baseline.  A
server that stops reading (TCP back-pressure) also passes: it holds nothing.
Each case then checks the protocol answer and that the connection (or a new
one) still works.

Names: folder names and addresses with "../", NUL, CR/LF and over-long
parts are refused (IMAP CREATE/RENAME/SELECT/APPEND, SMTP MAIL/RCPT,
`xmailctl user add` / `domain add`), and nothing is created outside the data
directory (the whole test directory tree is compared before and after) or in
unexpected places inside it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.proof.support import NO_THROTTLE, Daemon, LineClient, pop3_multiline, pop3_status, smtp_reply
from tests.support.daemon import server_side_sockets
from tests.support.wait import wait_until

pytestmark = pytest.mark.timeout(240)

ALICE = "alice@example.com"
HUNDRED_MB = 100 * 1024 * 1024
MAX_GROWTH_KB = 8 * 1024  # "a few MB"
CHUNK = b"A" * (1024 * 1024)
STALL_SECONDS = 3.0  # the server stopped reading: back-pressure, stop sending


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: Any) -> Iterator[Daemon]:
    workdir = str(tmp_path_factory.mktemp("limits"))
    daemon = Daemon(workdir, listeners=("smtp", "pop3", "imap"), extra=NO_THROTTLE)
    daemon.ctl("domain", "add", "example.com")
    daemon.ctl("user", "add", ALICE, "--password-stdin", stdin=PASSWORD + "\n")
    daemon.start()
    warm_up(daemon)
    yield daemon
    assert daemon.stop() == 0
    assert not daemon.tracebacks(), daemon.log_text()


def warm_up(daemon: Daemon) -> None:
    """Touch every code path once so that lazy imports and caches are in
    the baseline, not counted as growth."""
    for _ in range(2):
        c = LineClient(daemon.ports["smtp"])
        smtp_reply(c)
        for line in (b"EHLO x", b"MAIL FROM:<a@remote.test>", b"RCPT TO:<alice@example.com>", b"DATA"):
            c.send(line + b"\r\n")
            smtp_reply(c)
        c.send(b"Subject: warm\r\n\r\n" + b"x" * 998 + b"\r\n.\r\n")
        smtp_reply(c)
        c.send(b"x" * 20000 + b"\r\n")
        smtp_reply(c)
        c.close()
        p = LineClient(daemon.ports["pop3"])
        pop3_status(p)
        for line in (f"USER {ALICE}".encode(), f"PASS {PASSWORD}".encode(), b"STAT", b"x" * 5000, b"QUIT"):
            p.send(line + b"\r\n")
            pop3_status(p)
        p.close()
        i = LineClient(daemon.ports["imap"])
        i.line()
        i.send(b'a LOGIN alice@example.com "' + PASSWORD.encode() + b'"\r\nb SELECT INBOX\r\n'
               b"c FETCH 1:* (FLAGS BODY.PEEK[])\r\n" + b"d " + b"x" * 70000 + b"\r\ne LOGOUT\r\n")
        while i.line():
            pass
        i.close()
    # Settled once the server has handled every close (no connection of
    # its own left established or half-closed), not after a pause.
    ports = list(daemon.ports.values())
    wait_until(lambda: not [s for s in server_side_sockets(ports) if s[0] in (0x01, 0x08)],
               what="the server closed the warm-up connections")


class PeakRSS:
    """Samples the server's VmRSS in a thread while a case runs."""

    def __init__(self, daemon: Daemon):
        self.daemon = daemon
        self.baseline = daemon.rss_kb()
        self.peak = self.baseline
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.daemon.rss_kb())
            time.sleep(0.02)

    def __enter__(self) -> PeakRSS:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.daemon.rss_kb())

    def check(self, what: str) -> None:
        growth = self.peak - self.baseline
        print(f"{what}: baseline {self.baseline} kB, peak {self.peak} kB, growth {growth} kB")
        assert growth < MAX_GROWTH_KB, f"{what}: RSS grew by {growth} kB ({self.baseline} -> {self.peak})"


def flood(client: LineClient, total: int = HUNDRED_MB) -> int:
    """Send up to `total` bytes of "A" (no line ending); stop early when the
    server has not read anything for STALL_SECONDS or has closed the
    connection (RFC 7888 §4 allows it for a refused {n+}).  Returns bytes sent."""
    sock = client.sock
    sock.settimeout(STALL_SECONDS)
    sent = 0
    try:
        while sent < total:
            sent += sock.send(CHUNK[: min(len(CHUNK), total - sent)])
    except (TimeoutError, BrokenPipeError, ConnectionResetError):
        pass
    finally:
        sock.settimeout(30)
    return sent


def measured(daemon: Daemon, what: str, action: Callable[[], Any]) -> Any:
    with PeakRSS(daemon) as rss:
        result = action()
    rss.check(what)
    return result


# -- memory ----------------------------------------------------------------------------------------


def test_smtp_100mb_command_line(daemon: Daemon) -> None:
    c = LineClient(daemon.ports["smtp"])
    try:
        assert smtp_reply(c)[0] == 220
        c.send(b"EHLO client\r\n")
        assert smtp_reply(c)[0] == 250
        sent = measured(daemon, "SMTP 100 MB command line", lambda: flood(c))
        c.send(b"\r\n")
        code, lines = smtp_reply(c)
        assert code == 500, lines  # RFC 5321 §4.5.3.1.4: line too long
        c.send(b"NOOP\r\n")
        assert smtp_reply(c)[0] == 250
        print(f"  sent {sent} bytes")
    finally:
        c.close()


def test_smtp_100mb_line_in_data(daemon: Daemon) -> None:
    c = LineClient(daemon.ports["smtp"])
    try:
        assert smtp_reply(c)[0] == 220
        for line, code in ((b"EHLO client", 250), (b"MAIL FROM:<big@remote.test>", 250),
                           (b"RCPT TO:<alice@example.com>", 250), (b"DATA", 354)):
            c.send(line + b"\r\n")
            assert smtp_reply(c)[0] == code, line
        c.send(b"Subject: one long line\r\n\r\n")
        sent = measured(daemon, "SMTP DATA 100 MB line", lambda: flood(c))
        c.send(b"\r\n.\r\n")
        code, lines = smtp_reply(c)
        # Over max_message_size (552, RFC 5321 §4.5.3.1.10) or line too long (500).
        assert code in (500, 552, 554), lines
        c.send(b"NOOP\r\n")
        assert smtp_reply(c)[0] == 250
        print(f"  sent {sent} bytes")
    finally:
        c.close()
    # Nothing was delivered.
    found = [e for e in os.listdir(os.path.join(daemon.data_dir, "mail", "example.com", "alice", "cur"))
             if os.path.getsize(os.path.join(daemon.data_dir, "mail", "example.com", "alice", "cur", e))
             > 1024 * 1024]
    assert found == []


def test_pop3_100mb_line(daemon: Daemon) -> None:
    c = LineClient(daemon.ports["pop3"])
    try:
        assert pop3_status(c).startswith(b"+OK")
        sent = measured(daemon, "POP3 100 MB line", lambda: flood(c))
        c.send(b"\r\n")
        assert pop3_status(c).startswith(b"-ERR")
        c.send(b"CAPA\r\n")
        assert pop3_status(c).startswith(b"+OK")
        pop3_multiline(c)
        print(f"  sent {sent} bytes")
    finally:
        c.close()


def imap_login(port: int) -> LineClient:
    c = LineClient(port)
    assert c.line().startswith(b"* OK")
    c.send(b'a LOGIN alice@example.com "' + PASSWORD.encode() + b'"\r\n')
    assert c.line().startswith(b"a OK")
    return c


def imap_tagged(c: LineClient, tag: bytes) -> bytes:
    while True:
        line = c.line()
        assert line, "closed"
        if line.startswith(tag + b" "):
            return line


def test_imap_100mb_line(daemon: Daemon) -> None:
    c = imap_login(daemon.ports["imap"])
    try:
        c.send(b"b NOOP ")
        sent = measured(daemon, "IMAP 100 MB line", lambda: flood(c))
        c.send(b"\r\n")
        # RFC 3501 §7.1.3: tagged, the tag was read (bug P5, fixed).
        reply = c.line()
        assert reply.startswith((b"b BAD", b"b NO")), reply
        c.send(b"c NOOP\r\n")
        assert imap_tagged(c, b"c").startswith(b"c OK")
        print(f"  sent {sent} bytes")
    finally:
        c.close()


def test_imap_over_long_line_gets_a_tagged_reply(daemon: Daemon) -> None:
    """RFC 3501 §7.1.3: the untagged BAD is for errors whose command cannot
    be determined; a client waiting for tag b would otherwise wait forever."""
    c = imap_login(daemon.ports["imap"])
    try:
        c.send(b"b NOOP " + b"x" * 100000 + b"\r\n")
        assert c.line().startswith(b"b BAD")
    finally:
        c.close()


@pytest.mark.parametrize("command", [b"APPEND INBOX", b"LOGIN", b"SELECT", b"APPEND INBOX (\\Seen)"])
def test_imap_4gb_synchronizing_literal_is_refused(daemon: Daemon, command: bytes) -> None:
    c = imap_login(daemon.ports["imap"])
    try:
        c.send(b"b " + command + b" {4294967295}\r\n")
        reply = c.line()
        # RFC 7889 §4 / RFC 3501 §7.5: refuse with a tagged reply, no "+".
        assert reply.startswith(b"b NO") or reply.startswith(b"b BAD"), reply
        c.send(b"c NOOP\r\n")
        assert imap_tagged(c, b"c").startswith(b"c OK")
    finally:
        c.close()


def test_imap_4gb_non_synchronizing_literal(daemon: Daemon) -> None:
    """RFC 7888 §4: the client sends at once; the server may drop the data
    or close, but must not hold it."""
    c = imap_login(daemon.ports["imap"])
    try:
        c.send(b"b APPEND INBOX {4294967295+}\r\n")
        sent = measured(daemon, "IMAP {4294967295+} literal, 100 MB sent", lambda: flood(c))
        print(f"  sent {sent} bytes")
    finally:
        c.close()
    # The server is fine afterwards.
    c = imap_login(daemon.ports["imap"])
    try:
        c.send(b"c NOOP\r\n")
        assert imap_tagged(c, b"c").startswith(b"c OK")
    finally:
        c.close()


def test_many_connections_with_partial_lines(daemon: Daemon) -> None:
    """200 connections each holding a just-under-the-limit partial line:
    memory is bounded per connection (~ line limit), not by what is sent."""
    clients = []
    try:
        with PeakRSS(daemon) as rss:
            for n in range(200):
                name = ("smtp", "pop3", "imap")[n % 3]
                c = LineClient(daemon.ports[name])
                c.line()
                c.send(b"x" * 1000)
                clients.append(c)
            # Measured once the server has read every partial line (nothing
            # left in the kernel's receive queues of its 200 sockets).
            mine = {c.sock.getsockname()[1] for c in clients}
            ports = list(daemon.ports.values())
            wait_until(lambda: sum(1 for s in server_side_sockets(ports) if s[2] in mine and not s[1]) == 200,
                       what="the server read the 200 partial lines")
        growth = rss.peak - rss.baseline
        print(f"200 partial lines: growth {growth} kB")
        assert growth < 40 * 1024
    finally:
        for c in clients:
            c.close()


# -- names and addresses ---------------------------------------------------------------------------

BAD_FOLDER_NAMES: list[bytes] = [
    b"../escape", b"../../../../../../tmp/xmail-escape", b"a/../../b", b"..", b".", b"a/./b", b"/abs",
    b"a//b", b"a\x00b", b"a\r\nb", b"a\rb", b"a\nb", b"x" * 300, b"a/" + b"y" * 300,
    b"&AC4ALg-/x", b"&AC8-", b"\x7f", b"&AAA-", b"&ANw",
]


def literal(value: bytes) -> bytes:
    return b"{%d+}\r\n" % len(value) + value


def tree(root: str, skip: str) -> set[str]:
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        if os.path.abspath(dirpath) == os.path.abspath(skip):
            dirnames[:] = []
            continue
        for name in dirnames + filenames:
            found.add(os.path.relpath(os.path.join(dirpath, name), root))
    return found


def test_bad_folder_names_are_refused(daemon: Daemon) -> None:
    outside_before = tree(os.path.dirname(daemon.workdir), daemon.data_dir)
    user_root = os.path.join(daemon.data_dir, "mail", "example.com", "alice")
    entries_before = set(os.listdir(user_root))
    results = {}
    for n, name in enumerate(BAD_FOLDER_NAMES):
        # A connection per name: a run of BADs would end the session (BYE).
        c = imap_login(daemon.ports["imap"])
        try:
            for verb, line in (
                (b"CREATE", b"CREATE " + literal(name)),
                (b"RENAME", b"RENAME Archive " + literal(name)),
                (b"SELECT", b"SELECT " + literal(name)),
                (b"APPEND", b"APPEND " + literal(name) + b" " + literal(b"Subject: x\r\n\r\nx\r\n")),
                (b"RENAME2", b"RENAME " + literal(name) + b" Elsewhere"),
            ):
                tag = b"n%d%s" % (n, verb)
                c.send(tag + b" " + line + b"\r\n")
                results[(name, verb)] = imap_tagged(c, tag)
        finally:
            c.close()
    c = imap_login(daemon.ports["imap"])
    try:
        c.send(b'z LIST "" "*"\r\n')
        listing = []
        while True:
            line = c.line()
            if line.startswith(b"z "):
                break
            listing.append(line)
    finally:
        c.close()
    accepted = {k: v for k, v in results.items() if v.split(b" ")[1] == b"OK"}
    assert not accepted, accepted
    # RFC 3501 §6.3.3: NO [CANNOT] or BAD for a name that cannot be created.
    assert all(v.split(b" ")[1] in (b"NO", b"BAD") for v in results.values())
    names = {line.rsplit(b" ", 1)[-1].strip() for line in listing}
    assert names == {b"INBOX", b"Sent", b"Drafts", b"Trash", b"Junk", b"Archive", b"Recycle"}, listing
    assert set(os.listdir(user_root)) == entries_before
    assert tree(os.path.dirname(daemon.workdir), daemon.data_dir) == outside_before


BAD_ADDRESSES = [
    b"../../etc/passwd@example.com", b"../alice@example.com", b"alice/../bob@example.com",
    b"a\x00b@example.com", b"a\rb@example.com", b"alice@../example.com", b"alice@example.com/..",
    b"alice@example..com", b"x" * 65 + b"@example.com", b"alice@" + b"d" * 64 + b".example.com",
    b"alice@" + b"d." * 130 + b"com", b".alice@example.com", b"alice.@example.com", b"al..ice@example.com",
    b"alice@[../../x]", b"alice@example.com\x00", b"alice%2e%2e@example.com", b"\"../x\"@example.com",
]


# An address literal's content is checked loosely on purpose
# (smtp/grammar.py: "never local"), so "[../../x]" passes MAIL.
MAIL_MAY_ACCEPT = {b"\"../x\"@example.com", b"alice%2e%2e@example.com",
                   b"alice@" + b"d" * 64 + b".example.com", b"alice@[../../x]"}


def test_bad_smtp_addresses_are_refused(daemon: Daemon) -> None:
    outside_before = tree(os.path.dirname(daemon.workdir), daemon.data_dir)
    domain_before = set(os.listdir(os.path.join(daemon.data_dir, "mail", "example.com")))
    for address in BAD_ADDRESSES:
        # A connection per address: the error budget would end the session.
        c = LineClient(daemon.ports["smtp"])
        try:
            assert smtp_reply(c)[0] == 220
            c.send(b"EHLO client\r\n")
            assert smtp_reply(c)[0] == 250
            c.send(b"MAIL FROM:<" + address + b">\r\n")
            code, lines = smtp_reply(c)
            if code == 250:
                # Syntactically valid senders (a quoted local part, "%", a
                # 64-octet label: RFC 5321 §4.1.2 has no label limit) may be
                # accepted for MAIL; as recipients they must still be refused.
                assert address in MAIL_MAY_ACCEPT, (address, lines)
                c.send(b"RSET\r\n")
                assert smtp_reply(c)[0] == 250
            else:
                assert 500 <= code < 600, (address, lines)
            c.send(b"MAIL FROM:<ok@remote.test>\r\n")
            assert smtp_reply(c)[0] == 250
            c.send(b"RCPT TO:<" + address + b">\r\n")
            code, lines = smtp_reply(c)
            assert 500 <= code < 600, (address, lines)
            c.send(b"NOOP\r\n")
            assert smtp_reply(c)[0] == 250
        finally:
            c.close()
    assert set(os.listdir(os.path.join(daemon.data_dir, "mail", "example.com"))) == domain_before
    assert tree(os.path.dirname(daemon.workdir), daemon.data_dir) == outside_before


@pytest.mark.parametrize("argv", [
    ["user", "add", "../evil@example.com"], ["user", "add", "a/../../evil@example.com"],
    ["user", "add", "evil@../example.com"], ["user", "add", "a\nb@example.com"],
    ["user", "add", "a\rb@example.com"], ["user", "add", "x" * 65 + "@example.com"],
    ["user", "add", "evil@" + "d" * 64 + ".example.com"], ["user", "add", "evil@example.com/.."],
    ["user", "add", "/etc/passwd@example.com"], ["domain", "add", "../evil"], ["domain", "add", "a/b"],
    ["domain", "add", "evil\n.com"], ["domain", "add", "d" * 64 + ".com"], ["domain", "add", ".."],
])
def test_xmailctl_refuses_bad_names(daemon: Daemon, argv: list[str]) -> None:
    outside_before = tree(os.path.dirname(daemon.workdir), daemon.data_dir)
    mail_before = tree(os.path.join(daemon.data_dir, "mail"), "")
    stdin = "a password\n" if argv[0] == "user" else None
    result = daemon.ctl(*argv, *(["--password-stdin"] if stdin else []), stdin=stdin, check=False)
    assert result.returncode != 0, (argv, result.stdout)
    assert result.stderr.strip(), "no error message"
    assert "Traceback" not in result.stderr, result.stderr
    assert tree(os.path.join(daemon.data_dir, "mail"), "") == mail_before
    assert tree(os.path.dirname(daemon.workdir), daemon.data_dir) == outside_before
