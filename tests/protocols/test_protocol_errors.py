# -*- test-case-name: tests.protocols.test_protocol_errors -*-
"""The skeleton's three error classes and the gate's refusals as wire bytes,
per protocol (xmail/protocols/skeleton.py): byte-exact unit checks on each
session's one mapping function, then acceptance checks over real sockets
with smtplib, poplib and imaplib that the codes reach the client."""

from __future__ import annotations

import imaplib
import poplib
import smtplib
from typing import Any

import pytest
from twisted.internet import task
from twisted.logger import globalLogPublisher
from twisted.python.failure import Failure

from tests.conftest import PASSWORD, RunningServer
from tests.protocols.test_imap_session import connect as imap_connect
from tests.protocols.test_imap_session import exchange
from tests.protocols.test_smtp_session import Client as SMTPClient
from xmail.config import Settings
from xmail.context import ServerContext
from xmail.protocols.imap.session import No
from xmail.protocols.pop3.maildrop import InProcessMaildropLocks
from xmail.protocols.pop3.parser import Command as POP3Command
from xmail.protocols.pop3.session import POP3Session
from xmail.protocols.pop3.session import UserError as POP3UserError
from xmail.protocols.skeleton import BadSyntax, ServerFault, UserError
from xmail.protocols.smtp import replies
from xmail.store.interfaces import OverQuota

ALICE = "alice@example.com"


@pytest.fixture
def logged() -> Any:
    """The log events emitted meanwhile (a fault must be logged with its traceback)."""
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    yield events
    globalLogPublisher.removeObserver(events.append)


def _raised(error: Exception, reply: Any) -> Any:
    """Call `reply(error)` from inside an except clause, as the dispatchers do."""
    try:
        raise error
    except Exception as e:
        return reply(e)


def _failures(events: list[dict]) -> list[Any]:
    return [e["log_failure"] for e in events if "log_failure" in e]


# -- IMAP: tagged NO [CODE] / BAD / NO [SERVERBUG] (RFC 3501 §7.1, RFC 5530) ---------
@pytest.mark.parametrize("error, wire", [
    (UserError("TRYCREATE", "no such mailbox"), b"t NO [TRYCREATE] no such mailbox\r\n"),
    (No("refused"), b"t NO refused\r\n"),
    (BadSyntax("missing argument"), b"t BAD missing argument\r\n"),
    (OverQuota("over quota"), b"t NO [OVERQUOTA] over quota\r\n"),
])
def test_imap_error_mapping(error: Exception, wire: bytes, logged: list[dict]) -> None:
    proto, transport, clock = imap_connect()
    transport.clear()
    _raised(error, lambda e: proto.session.reply_error(b"t", e, "X", False))
    assert transport.value() == wire
    assert _failures(logged) == []


@pytest.mark.parametrize("error, wire", [
    (ServerFault("index unavailable"), b"t NO [SERVERBUG] index unavailable\r\n"),
    (RuntimeError("secret detail"), b"t NO [SERVERBUG] internal server error, logged\r\n"),
])
def test_imap_fault_is_serverbug_and_logged(error: Exception, wire: bytes, logged: list[dict]) -> None:
    proto, transport, clock = imap_connect()
    transport.clear()
    _raised(error, lambda e: proto.session.reply_error(b"t", e, "X", False))
    assert transport.value() == wire
    assert [f.value for f in _failures(logged)] == [error]


def test_imap_gate_refusals() -> None:
    proto, transport, clock = imap_connect()
    assert exchange(proto, transport, clock, b"a FROB\r\n") == b"a BAD unknown command FROB\r\n"
    assert exchange(proto, transport, clock, b"b FETCH 1 FLAGS\r\n") == (
        b"b BAD FETCH not allowed in the not authenticated state\r\n")
    assert exchange(proto, transport, clock, b"c NOOP\r\n") == b"c OK NOOP completed\r\n"


# -- POP3: -ERR [CODE] (RFC 2449 §8, RFC 3206) --------------------------------------
class _Wire:
    def __init__(self) -> None:
        self.out = b""

    def write(self, data: bytes) -> None:
        self.out += data

    def close(self) -> None:
        pass


def _pop3() -> tuple[POP3Session, _Wire]:
    wire = _Wire()
    ctx = ServerContext(settings=Settings(), reactor=task.Clock())
    return POP3Session(ctx, wire, client_ip="127.0.0.1", secure=False,
                       locks=InProcessMaildropLocks()), wire


@pytest.mark.parametrize("error, wire", [
    (UserError("IN-USE", "maildrop locked"), b"-ERR [IN-USE] maildrop locked\r\n"),
    (POP3UserError("no such message"), b"-ERR no such message\r\n"),
    (BadSyntax("invalid message number"), b"-ERR invalid message number\r\n"),
    (RuntimeError("secret detail"), b"-ERR [SYS/TEMP] internal server error, try again later\r\n"),
])
def test_pop3_error_mapping(error: Exception, wire: bytes, logged: list[dict]) -> None:
    session, out = _pop3()
    _raised(error, session._error_reply)
    assert out.out == wire
    assert len(_failures(logged)) == (1 if wire.startswith(b"-ERR [SYS/TEMP]") else 0)


@pytest.mark.parametrize("command, wire", [
    (POP3Command("FROB"), b"-ERR unknown command\r\n"),
    (POP3Command("STAT"), b"-ERR STAT not valid in the AUTHORIZATION state\r\n"),
    (POP3Command("USER"), b"-ERR wrong number of arguments for USER\r\n"),
    (POP3Command("CAPA", ("x",)), b"-ERR wrong number of arguments for CAPA\r\n"),
])
def test_pop3_gate_refusals(command: POP3Command, wire: bytes) -> None:
    session, out = _pop3()
    session.handle(command)
    assert out.out == wire


# -- SMTP: reply code + enhanced status (RFC 5321 §4.2, RFC 3463) -----------------
@pytest.mark.parametrize("error, wire", [
    (UserError(replies.RELAY_DENIED), replies.RELAY_DENIED.to_bytes()),
    (UserError(replies.NEED_MAIL, "MAIL first"), b"503 5.5.1 MAIL first\r\n"),
    (BadSyntax("x"), b"501 5.5.4 Syntax error in parameters or arguments\r\n"),
    (ServerFault("queue down"), b"451 4.3.0 Temporary local failure, try again later\r\n"),
    (RuntimeError("secret"), b"451 4.3.0 Temporary local failure, try again later\r\n"),
])
def test_smtp_error_mapping(tmp_path: Any, error: Exception, wire: bytes, logged: list[dict]) -> None:
    session = SMTPClient(tmp_path).protocol.session
    assert _raised(error, lambda e: session._error_reply(Failure(e), "X")).to_bytes() == wire
    assert len(_failures(logged)) == (1 if wire.startswith(b"451") else 0)


def test_smtp_gate_refusals(tmp_path: Any) -> None:
    c = SMTPClient(tmp_path)
    c.read()
    assert c.send(b"MAIL FROM:<a@b>\r\n") == b"503 5.5.1 Send EHLO/HELO first\r\n"
    assert c.send(b"FROB\r\n") == b"500 5.5.2 Command unrecognized\r\n"
    assert c.send(b"NOOP " + b"x" * 600 + b"\r\n") == b"500 5.5.2 Line too long\r\n"
    assert c.send(b"FROB " + b"x" * 600 + b"\r\n") == b"500 5.5.2 Line too long\r\n"
    c.send(b"EHLO c\r\n")
    # MAIL/RCPT have their own, longer limit (RFC 5321 §4.5.3.1.4, RFC 1869 §4.1.2)
    assert c.send(b"MAIL FROM:<a@b> ENVID=" + b"x" * 600 + b"\r\n").startswith(b"501 5.5.4")
    assert c.send(b"DATA x\r\n") == b"503 5.5.1 Need MAIL command first\r\n"


def test_smtp_submission_gate_needs_auth(tmp_path: Any) -> None:
    c = SMTPClient(tmp_path, mode="submission")
    c.read()
    c.send(b"EHLO c\r\n")
    assert c.send(b"MAIL FROM:<a@b>\r\n") == b"530 5.7.0 Authentication required\r\n"
    assert c.send(b"RCPT TO:<a@b>\r\n") == b"530 5.7.0 Authentication required\r\n"
    assert c.send(b"DATA\r\n") == b"530 5.7.0 Authentication required\r\n"


# -- needs_tls: the password rule as a gate flag (TLS or the loopback exemption) --------
def test_needs_tls_marks_the_password_commands_of_every_table() -> None:
    from xmail.protocols.imap.session import REGISTRY
    from xmail.protocols.pop3.session import COMMANDS as POP3
    from xmail.protocols.smtp.session import COMMANDS as SMTP

    def flagged(table: Any) -> set[str]:
        return {name for name, command in table.items() if command.needs_tls}

    assert flagged(POP3) == {"USER", "PASS", "AUTH"}
    assert flagged(SMTP) == {"AUTH"}
    assert flagged(REGISTRY) == {"LOGIN", "AUTHENTICATE"}


def test_needs_tls_refusals_keep_each_protocols_reply(tmp_path: Any) -> None:
    # A remote client (192.0.2.7) on a clear connection.
    proto, transport, clock = imap_connect("192.0.2.7")
    assert exchange(proto, transport, clock, b"a AUTHENTICATE PLAIN\r\n") == (
        b"a NO [PRIVACYREQUIRED] use STARTTLS first\r\n")
    wire = _Wire()
    ctx = ServerContext(settings=Settings(), reactor=task.Clock())
    pop3 = POP3Session(ctx, wire, client_ip="192.0.2.7", secure=False, locks=InProcessMaildropLocks())
    pop3.handle(POP3Command("PASS", ("secret",)))
    assert wire.out == (b"-ERR [AUTH] plaintext authentication disallowed on an unencrypted connection, "
                        b"use STLS\r\n")
    c = SMTPClient(tmp_path, mode="submission", ip="192.0.2.7")
    c.backend.loopback = False
    c.read()
    assert c.send(b"AUTH PLAIN\r\n") == b"503 5.5.1 Send EHLO/HELO first\r\n"  # hello comes first
    c.send(b"EHLO c\r\n")
    assert c.send(b"AUTH LOGIN\r\n") == replies.AUTH_NEEDS_TLS.to_bytes()
    mx = SMTPClient(tmp_path, mode="mx", ip="192.0.2.7")  # port 25: no AUTH at all, TLS or not
    mx.backend.loopback = False
    mx.read()
    mx.send(b"EHLO c\r\n")
    assert mx.send(b"AUTH LOGIN\r\n") == replies.AUTH_NOT_ENABLED.to_bytes()


# -- acceptance: the codes reach real clients over real sockets --------------------
def test_acceptance_smtp_codes(server: RunningServer) -> None:
    with smtplib.SMTP("127.0.0.1", server.port("smtp"), timeout=10) as s:
        assert s.docmd("MAIL", "FROM:<a@b>") == (503, b"5.5.1 Send EHLO/HELO first")
        s.ehlo("client.example")
        assert s.docmd("FROB") == (500, b"5.5.2 Command unrecognized")
        assert s.docmd("RCPT", "TO:<alice@example.com>") == (503, b"5.5.1 Need MAIL command first")
        assert s.docmd("MAIL", "FROM:<bob@remote.example>")[0] == 250
        assert s.docmd("MAIL", "FROM:<bob@remote.example>") == (503, b"5.5.1 Sender already given")
        assert s.docmd("DATA") == (554, b"5.5.1 No valid recipients")
        assert s.docmd("RSET") == (250, b"2.0.0 Reset OK")
        assert s.noop()[0] == 250  # the connection stays usable


def test_acceptance_pop3_codes(server: RunningServer) -> None:
    pop = poplib.POP3("127.0.0.1", server.port("pop3"), timeout=10)
    try:
        with pytest.raises(poplib.error_proto, match=r"-ERR unknown command"):
            pop._shortcmd("FROB")
        with pytest.raises(poplib.error_proto, match=r"-ERR STAT not valid in the AUTHORIZATION state"):
            pop.stat()
        pop.user(ALICE)
        with pytest.raises(poplib.error_proto, match=r"-ERR \[AUTH\] authentication failed"):
            pop.pass_("wrong")
        pop.user(ALICE)
        pop.pass_(PASSWORD)
        with pytest.raises(poplib.error_proto, match=r"-ERR no such message"):
            pop.retr(7)
        assert pop.noop().startswith(b"+OK")
    finally:
        pop.quit()


def test_acceptance_imap_codes(server: RunningServer, monkeypatch: Any) -> None:
    monkeypatch.setitem(imaplib.Commands, "FROB", ("NONAUTH", "AUTH", "SELECTED"))
    # imaplib itself refuses FETCH outside SELECTED; let it send it anyway.
    monkeypatch.setitem(imaplib.Commands, "FETCH", ("AUTH", "SELECTED"))
    imap = imaplib.IMAP4("127.0.0.1", server.port("imap"), timeout=10)
    try:
        with pytest.raises(imaplib.IMAP4.error, match=r"BAD.*unknown command FROB"):
            imap._simple_command("FROB")
        imap.login(ALICE, PASSWORD)
        typ, data = imap.select("No/Such/Folder")
        assert typ == "NO" and data[0].startswith(b"[NONEXISTENT]")
        typ, data = imap.create("INBOX")
        assert typ == "NO" and data[0].startswith(b"[ALREADYEXISTS]")
        with pytest.raises(imaplib.IMAP4.error, match=r"BAD.*FETCH not allowed in the authenticated state"):
            imap.fetch("1", "(FLAGS)")
        assert imap.noop()[0] == "OK"
    finally:
        imap.logout()
