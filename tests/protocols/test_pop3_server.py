# -*- test-case-name: tests.protocols.test_pop3_server -*-
"""POP3 acceptance tests: poplib and raw sockets against a running server.

The server is the real XmailService of tests/conftest.py (real store, real
portal, listeners on free loopback ports); fetchmail, a real command-line
POP3 client, is in test_pop3_fetchmail.py.
"""

from __future__ import annotations

import base64
import hashlib
import os
import poplib
import socket
import ssl
import time
from typing import Any

import pytest

from tests.conftest import PASSWORD, RunningServer
from tests.support.clients import Pop3Client
from xmail.message.dotstuff import encode_message

ALICE = "alice@example.com"


def message(subject: str, body: str = "hello\r\n") -> bytes:
    return (f"From: bob@example.com\r\nTo: {ALICE}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{subject.replace(' ', '.')}@example.com>\r\n\r\n{body}").encode()


def deliver(server: RunningServer, data: bytes, address: str = ALICE) -> int:
    return server.call(server.ctx.store.deliver, address, data).uid


def inbox(server: RunningServer, address: str = ALICE) -> Any:
    return server.call(lambda: server.ctx.store.mailbox(address).folder("INBOX"))


def inbox_uids(server: RunningServer, address: str = ALICE) -> list[int]:
    folder = inbox(server, address)
    return [r.uid for r in server.call(folder.records)]


def stored_bytes(server: RunningServer, uid: int, address: str = ALICE) -> bytes:
    folder = inbox(server, address)
    with server.call(folder.open_message, uid) as f:
        return f.read()


class BoundPOP3(poplib.POP3):
    """poplib.POP3 from a chosen source address (poplib has no source_address)."""

    def __init__(self, host: str, port: int, source: str, timeout: float = 10):
        self._source = source
        super().__init__(host, port, timeout)

    def _create_socket(self, timeout: float) -> socket.socket:
        return socket.create_connection((self.host, self.port), timeout, source_address=(self._source, 0))


def connect(server: RunningServer, source: str = "127.0.0.1") -> poplib.POP3:
    return BoundPOP3("127.0.0.1", server.port("pop3"), source)


def login(server: RunningServer, user: str = ALICE, source: str = "127.0.0.1") -> poplib.POP3:
    pop = connect(server, source)
    pop.user(user)
    pop.pass_(PASSWORD)
    return pop


def tls_context() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


# The raw POP3 client lives in tests.support.clients (one per protocol).
RawPOP3 = Pop3Client


def raw_login(server: RunningServer) -> RawPOP3:
    raw = RawPOP3(server.port("pop3"))
    assert raw.cmd(f"USER {ALICE}").startswith(b"+OK")
    assert raw.cmd(f"PASS {PASSWORD}").startswith(b"+OK")
    return raw


# --- the commands -------------------------------------------------------------


def test_capa_and_every_command(server: RunningServer):
    messages = [message(f"number {i}", f".dot {i}\r\nline\r\n") for i in range(1, 4)]
    uids = [deliver(server, m) for m in messages]
    pop = connect(server)
    capa = pop.capa()
    for name in ("TOP", "USER", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "STLS"):
        assert name in capa, name
    assert capa["SASL"] == ["PLAIN", "LOGIN"]
    assert capa["EXPIRE"] == ["NEVER"] and capa["LOGIN-DELAY"] == ["0"]
    assert capa["IMPLEMENTATION"] == ["xmail"]
    assert pop.user(ALICE).startswith(b"+OK")
    assert pop.pass_(PASSWORD).startswith(b"+OK maildrop has 3 messages")
    assert "STLS" in pop.capa()  # RFC 2449 §5: same list in both states
    stored = [stored_bytes(server, uid) for uid in uids]
    sizes = [len(s) for s in stored]
    assert pop.stat() == (3, sum(sizes))
    assert pop.list()[1] == [f"{n} {size}".encode() for n, size in enumerate(sizes, start=1)]
    assert pop.list(2) == f"+OK 2 {sizes[1]}".encode()
    uidls = pop.uidl()[1]
    assert len({line.split()[1] for line in uidls}) == 3
    assert pop.uidl(3).split()[2] == uidls[2].split()[1]
    for n, data in enumerate(stored, start=1):
        resp, lines, _ = pop.retr(n)
        assert resp == f"+OK {sizes[n - 1]} octets".encode()
        assert b"\r\n".join(lines) + b"\r\n" == data
    resp, lines, _ = pop.top(1, 1)
    header, _, body = stored[0].partition(b"\r\n\r\n")
    assert lines == header.split(b"\r\n") + [b"", b".dot 1"]
    assert pop.noop() == b"+OK"
    assert pop.dele(2).startswith(b"+OK")
    with pytest.raises(poplib.error_proto, match="already deleted"):
        pop.retr(2)
    with pytest.raises(poplib.error_proto, match="no such message"):
        pop.retr(4)
    assert pop.stat() == (2, sizes[0] + sizes[2])
    assert pop.rset().startswith(b"+OK")
    assert pop.stat() == (3, sum(sizes))
    assert pop.quit().startswith(b"+OK")
    assert inbox_uids(server) == uids


def test_quit_only_deletion_into_recycle_and_rset(server: RunningServer):
    uids = [deliver(server, message(f"m{i}")) for i in range(4)]
    pop = login(server)
    pop.dele(1)
    pop.dele(2)
    pop.rset()  # undoes both
    pop.dele(3)
    assert pop.noop() == b"+OK"  # DELE was answered and done: the next command ran
    assert inbox_uids(server) == uids  # DELE only marks
    pop.quit()
    # A DELE that removed at once could not have been undone by RSET:
    assert inbox_uids(server) == [uids[0], uids[1], uids[3]]
    recycled = server.call(lambda: server.ctx.store.mailbox(ALICE).recycle_list())
    assert [r.original_folder for r in recycled] == ["INBOX"]


def test_dropped_connection_deletes_nothing(server: RunningServer):
    uids = [deliver(server, message(f"m{i}")) for i in range(3)]
    pop = login(server)
    pop.dele(1)
    pop.dele(3)
    pop.sock.close()  # no QUIT
    pop.file.close()
    # The lock is released once the server notices; then a new session works.
    deadline = time.monotonic() + 5
    while True:
        try:
            pop = login(server)
            break
        except poplib.error_proto as e:
            assert b"[IN-USE]" in e.args[0]
            assert time.monotonic() < deadline
            time.sleep(0.05)
    assert pop.stat()[0] == 3
    pop.quit()
    assert inbox_uids(server) == uids


def test_second_session_is_in_use(server: RunningServer):
    deliver(server, message("one"))
    first = login(server)
    second = connect(server)
    second.user(ALICE)
    with pytest.raises(poplib.error_proto) as e:
        second.pass_(PASSWORD)
    assert e.value.args[0] == b"-ERR [IN-USE] maildrop is locked by another POP3 session"
    # Still in AUTHORIZATION: the other user can log in on the same connection.
    second.user("bob@example.com")
    assert second.pass_(PASSWORD).startswith(b"+OK")
    second.quit()
    first.quit()


def test_wrong_password_is_auth_error(server: RunningServer):
    pop = connect(server)
    pop.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        pop.pass_("wrong")
    pop.user(ALICE)
    assert pop.pass_(PASSWORD).startswith(b"+OK")
    pop.quit()


# --- message content on the wire ---------------------------------------------


def dense_dots(around: list[int]) -> bytes:
    """A message with a line starting with "." at every line start near each
    offset in `around`, lines of 3, 4 and 5 octets so the CRLF-dot sequence
    falls across the boundary in every way."""
    parts = [message("dots", "")]
    size = len(parts[0])
    shapes = [b".\r\n", b".a\r\n", b"..b\r\n"]
    i = 0
    for boundary in around:
        filler = b"x" * 70 + b"\r\n"
        while size < boundary - 300:
            parts.append(filler)
            size += len(filler)
        while size < boundary + 300:
            parts.append(shapes[i % 3])
            size += len(shapes[i % 3])
            i += 1
    parts.append(b"last line\r\n")
    return b"".join(parts)


def test_dots_at_and_around_16k_and_64k_boundaries(server: RunningServer):
    boundaries = [16384, 32768, 49152, 65536, 131072, 196608]
    uid = deliver(server, dense_dots(boundaries))
    stored = stored_bytes(server, uid)
    # The store may add header fields: check the dots still straddle every
    # boundary (a dot line begins within 2 octets of each).
    for boundary in boundaries:
        assert any(stored[b - 2:b] == b"\r\n" and stored[b:b + 1] == b"."
                   for b in range(boundary - 2, boundary + 3)), boundary
    raw = raw_login(server)
    status, body = raw.multiline("RETR 1")
    assert status == f"+OK {len(stored)} octets".encode()
    assert body == encode_message(stored)
    assert body.count(b"\r\n..") == stored.count(b"\r\n.")
    raw.cmd("QUIT")
    pop = login(server)
    assert b"\r\n".join(pop.retr(1)[1]) + b"\r\n" == stored
    pop.quit()


def test_message_with_bare_lfs_is_sent_with_crlf(server: RunningServer):
    uid = deliver(server, b"From: bob@example.com\nSubject: bare\n\n.first\nsecond\n.\nthird")
    stored = stored_bytes(server, uid)
    raw = raw_login(server)
    _, body = raw.multiline("RETR 1")
    assert body.replace(b"\r\n", b"").count(b"\n") == 0
    assert body == encode_message(stored)
    assert body.endswith(b"Subject: bare\r\n\r\n..first\r\nsecond\r\n..\r\nthird\r\n.\r\n")
    assert stored.count(b"\n") == stored.count(b"\r\n")  # the store invariant
    raw.close()


def test_large_message_streams_intact(server: RunningServer):
    line = b"0123456789abcdefghijklmnopqrstuvwxyz" * 2 + b"\r\n"
    body = b"".join((b"." if i % 97 == 0 else b"") + line for i in range(60000))  # ~4.4 MB
    uid = deliver(server, message("big", "") + body)
    stored = stored_bytes(server, uid)
    raw = raw_login(server)
    status, wire = raw.multiline("RETR 1")
    assert status == f"+OK {len(stored)} octets".encode()
    assert hashlib.sha256(wire).digest() == hashlib.sha256(encode_message(stored)).digest()
    _, top = raw.multiline("TOP 1 3")
    assert top == encode_message(stored, 3)
    assert raw.cmd("NOOP") == b"+OK"
    raw.close()


def test_message_expunged_by_another_session_is_an_error(server: RunningServer):
    uids = [deliver(server, message(f"m{i}")) for i in range(4)]
    pop = login(server)
    folder = inbox(server)
    server.call(folder.expunge, [uids[1]])
    with pytest.raises(poplib.error_proto, match="removed by another session"):
        pop.retr(2)
    assert pop.retr(3)[0].startswith(b"+OK")
    # A file that vanished under the index (another Maildir reader) too.
    os.unlink(server.call(folder.message_path, uids[3]))
    with pytest.raises(poplib.error_proto, match="removed by another session"):
        pop.top(4, 0)
    assert pop.stat()[0] == 4  # the list stays fixed for the session
    pop.dele(2)
    assert pop.quit().startswith(b"+OK")
    assert uids[1] not in inbox_uids(server)


# --- UIDL stability -------------------------------------------------------------


def uidl_map(server: RunningServer) -> dict[bytes, bytes]:
    """UIDL -> message content, from a fresh session."""
    pop = login(server)
    result = {}
    for line in pop.uidl()[1]:
        number, uidl = line.split()
        result[uidl] = b"\r\n".join(pop.retr(int(number))[1])
    pop.quit()
    return result


def test_uidl_stable_across_imap_activity_restart_and_reindex(server: RunningServer):
    uids = [deliver(server, message(f"m{i}")) for i in range(5)]
    before = uidl_map(server)
    assert len(before) == 5
    assert all(0x21 <= c <= 0x7E for uidl in before for c in uidl)
    # Another session expunges message 2: the others keep their UIDL.
    server.call(inbox(server).expunge, [uids[1]])
    after_expunge = uidl_map(server)
    assert after_expunge == {k: v for k, v in before.items() if b"m1" not in v}
    # Reindex rebuilds the index from the Maildir.
    server.call(server.ctx.store.reindex, ALICE)
    assert uidl_map(server) == after_expunge
    # Restart on the same data directory.
    settings = server.settings
    server.stop()
    again = RunningServer(settings)
    try:
        assert uidl_map(again) == after_expunge
        deliver(again, message("new one"))
        assert set(uidl_map(again)) > set(after_expunge)
    finally:
        again.stop()


# --- TLS and plaintext policy ----------------------------------------------------


def test_plaintext_auth_refused_before_tls_from_non_loopback(make_server: Any):
    server = make_server("[server]\nloopback_plaintext_auth = false\n")
    server.add_domain("example.com")
    server.add_user(ALICE)
    deliver(server, message("secret"))
    for source in ("127.0.0.2", "127.0.0.1"):  # with the exemption off, loopback too
        pop = connect(server, source)
        assert "USER" not in pop.capa() and "STLS" in pop.capa()
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] plaintext authentication disallowed"):
            pop.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"\[AUTH\] plaintext"):
            pop._shortcmd("AUTH PLAIN " + base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode())
        pop.stls(tls_context())
        assert "USER" in pop.capa() and "STLS" not in pop.capa()
        pop.user(ALICE)
        assert pop.pass_(PASSWORD).startswith(b"+OK maildrop has 1 messages")
        pop.quit()


def test_loopback_exemption_applies_to_127_0_0_1_only(server: RunningServer):
    pop = connect(server, "127.0.0.2")
    with pytest.raises(poplib.error_proto, match=r"\[AUTH\]"):
        pop.user(ALICE)
    pop.quit()
    pop = connect(server, "127.0.0.1")
    assert pop.user(ALICE).startswith(b"+OK")
    pop.quit()


def test_stls_then_auth_plain_and_login(server: RunningServer):
    deliver(server, message("tls"))
    pop = connect(server, "127.0.0.2")
    pop.stls(tls_context())
    assert pop.sock.version() is not None
    credentials = base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode()).decode()
    assert pop._shortcmd("AUTH PLAIN " + credentials).startswith(b"+OK maildrop has 1")
    assert pop.retr(1)[0].startswith(b"+OK")
    pop.quit()
    pop = connect(server, "127.0.0.2")
    pop.stls(tls_context())
    assert pop._shortcmd("AUTH LOGIN") == b"+ VXNlcm5hbWU6"
    assert pop._shortcmd(base64.b64encode(ALICE.encode()).decode()) == b"+ UGFzc3dvcmQ6"
    assert pop._shortcmd(base64.b64encode(PASSWORD.encode()).decode()).startswith(b"+OK")
    pop.quit()


def test_stls_discards_pipelined_plaintext(server: RunningServer):
    sock = socket.create_connection(("127.0.0.1", server.port("pop3")), source_address=("127.0.0.2", 0),
                                    timeout=10)
    reader = sock.makefile("rb")
    assert reader.readline().startswith(b"+OK")
    # An attacker in the middle appends commands after STLS in plaintext.
    sock.sendall(b"STLS\r\nUSER " + ALICE.encode() + b"\r\nPASS " + PASSWORD.encode() + b"\r\n")
    assert reader.readline() == b"+OK Begin TLS negotiation now\r\n"
    tls = tls_context().wrap_socket(sock, server_hostname="localhost")
    tls.sendall(b"STAT\r\n")
    tls_reader = tls.makefile("rb")
    # Still in AUTHORIZATION: the pipelined USER/PASS were not acted upon.
    assert tls_reader.readline() == b"-ERR STAT not valid in the AUTHORIZATION state\r\n"
    tls.close()


def test_pop3s_implicit_tls(server: RunningServer):
    deliver(server, message("implicit"))
    pop = poplib.POP3_SSL("127.0.0.1", server.port("pop3s"), context=tls_context(), timeout=10)
    assert "STLS" not in pop.capa()
    with pytest.raises(poplib.error_proto, match="TLS already active"):
        pop._shortcmd("STLS")
    pop.user(ALICE)
    assert pop.pass_(PASSWORD).startswith(b"+OK maildrop has 1")
    # pop3 and pop3s share the maildrop locks.
    other = connect(server)
    other.user(ALICE)
    with pytest.raises(poplib.error_proto, match=r"\[IN-USE\]"):
        other.pass_(PASSWORD)
    other.quit()
    pop.quit()
