# -*- test-case-name: tests.protocols.test_smtp_session -*-
"""The SMTP state machine on a StringTransport with an injected clock.

The backend here is a small in-memory stand-in for MailAgent, so these
tests pin down the protocol rules (order of replies under pipelining,
limits, timeouts, SASL exchanges); the acceptance tests in
test_smtp_mx.py / test_smtp_submission.py run the same rules against the
real server.
"""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import defer, task
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport

from xmail.auth.login import Lease
from xmail.auth.sasl import Credentials
from xmail.config import Settings
from xmail.context import ServerContext
from xmail.protocols.smtp import replies
from xmail.protocols.smtp.limits import DailySendCounter
from xmail.protocols.smtp.server import SMTPFactory
from xmail.protocols.smtp.session import MAX_ERRORS
from xmail.protocols.smtp.spool import MessageSpool

REPLY_LINE = re.compile(rb"\A[2-5][0-9]{2}[ -][^\r\n]*\r\n\Z")


class FakeBackend:
    hostname = "mx.test"
    max_message_size = 1000
    max_recipients = 3
    postmaster = "postmaster@mx.test"

    def __init__(self, tmp_dir: str, clock: task.Clock):
        self.tmp_dir = tmp_dir
        self.clock = clock
        self.delay = 0.0
        self.accepted: list[tuple[Any, bytes]] = []
        self.counter = DailySendCounter(2)
        self.loopback = True
        self.leases: list[Lease] = []
        self.released: list[str] = []

    def is_loopback(self, host: str) -> bool:
        return self.loopback

    def authenticate(self, credentials: Credentials, ip: str, method: str) -> Any:
        if (credentials.authcid, credentials.password) == ("alice@example.com", "pw"):
            lease = Lease("alice@example.com", protocol="submission", client_ip=ip,
                          on_release=[lambda: self.released.append("alice@example.com")])
            self.leases.append(lease)
            return defer.succeed(lease)
        return defer.fail(UnauthorizedLogin("invalid credentials"))

    def may_send_as(self, user: str, address: str) -> bool:
        return address.lower() == user

    def send_limit_reached(self, user: str) -> int | None:
        return self.counter.limit if self.counter.reached(user) else None

    def check_recipient(self, address: str, info: Any, envelope: Any) -> Any:
        if address.endswith("@example.com"):
            result = (replies.RECIPIENT_OK, address) if address.startswith(("alice", "bob")) else (
                replies.UNKNOWN_USER, None)
        else:
            result = (replies.RELAY_DENIED, None)
        if not self.delay:
            return result
        d: defer.Deferred = defer.Deferred()
        self.clock.callLater(self.delay, d.callback, result)
        return d

    def new_spool(self, info: Any, envelope: Any, on_headers: Any) -> MessageSpool:
        return MessageSpool(self.tmp_dir, "t", max_size=self.max_message_size, on_headers=on_headers)

    def check_headers(self, info: Any, envelope: Any, section: bytes) -> Any:
        return section, None, None

    def accept_message(self, info: Any, envelope: Any, spool: MessageSpool) -> Any:
        spool_source = spool.source()
        self.accepted.append((envelope, spool_source))
        if info.user:
            self.counter.record(info.user)
        return replies.MESSAGE_ACCEPTED.format("ID")


class Client:
    def __init__(self, tmp_path: Any, mode: str = "mx", ip: str = "127.0.0.1"):
        self.clock = task.Clock()
        # STARTTLS offered; start_tls is recorded, not run
        ctx = ServerContext(settings=Settings(), reactor=self.clock, tls=object())
        self.factory = SMTPFactory(ctx, implicit_tls=False, mode=mode)
        self.backend = FakeBackend(str(tmp_path), self.clock)
        self.factory.agent = self.backend
        self.transport = StringTransport(peerAddress=IPv4Address("TCP", ip, 40000))
        self.transport.startTLS = lambda options: setattr(self, "tls_started", True)
        self.tls_started = False
        self.protocol = self.factory.buildProtocol(None)
        self.protocol.callLater = self.clock.callLater
        self.protocol.makeConnection(self.transport)

    def read(self) -> bytes:
        value = self.transport.value()
        self.transport.clear()
        return value

    def send(self, data: bytes) -> bytes:
        self.protocol.dataReceived(data)
        return self.read()

    def codes(self, data: bytes) -> list[str]:
        """Final reply codes (and enhanced codes) for the data sent."""
        out = self.send(data)
        return [line[:3].decode() for line in out.split(b"\r\n") if line[3:4] == b" "]


@pytest.fixture
def client(tmp_path: Any) -> Client:
    c = Client(tmp_path)
    assert c.read().startswith(b"220 mx.test ESMTP")
    return c


def test_ehlo_extensions_mx(client: Client) -> None:
    out = client.send(b"EHLO c.example\r\n").decode()
    for ext in ("PIPELINING", "SIZE 1000", "8BITMIME", "SMTPUTF8", "ENHANCEDSTATUSCODES", "STARTTLS",
                "CHUNKING", "DSN"):
        assert f"250-{ext}\r\n" in out or f"250 {ext}\r\n" in out
    assert "AUTH" not in out  # MX listener: no AUTH (Postfix port 25 default)


def test_pipelining_with_slow_checks_keeps_order(client: Client) -> None:
    client.backend.delay = 1.0
    client.send(b"EHLO c\r\n")
    out = client.send(b"MAIL FROM:<x@remote.org>\r\nRCPT TO:<alice@example.com>\r\n"
                      b"RCPT TO:<nobody@example.com>\r\nRCPT TO:<bob@example.com>\r\nDATA\r\n")
    assert out == b"250 2.1.0 Sender OK\r\n"
    client.clock.advance(1)
    assert client.read() == b"250 2.1.5 Recipient OK\r\n"
    client.clock.advance(1)
    assert client.read() == b"550 5.1.1 No such user here\r\n"
    client.clock.advance(1)
    assert client.read() == b"250 2.1.5 Recipient OK\r\n354 End data with <CR><LF>.<CR><LF>\r\n"
    assert client.codes(b"Subject: x\r\n\r\nhi\r\n.\r\nQUIT\r\n") == ["250", "221"]
    envelope, source = client.backend.accepted[0]
    assert [r.address for r in envelope.recipients] == ["alice@example.com", "bob@example.com"]
    assert source == b"Subject: x\r\n\r\nhi\r\n"


def test_input_paused_while_waiting_once_buffer_fills(client: Client) -> None:
    client.backend.delay = 1.0
    client.send(b"EHLO c\r\nMAIL FROM:<x@remote.org>\r\nRCPT TO:<alice@example.com>\r\n")
    assert client.transport.producerState == "producing"
    client.send(b"NOOP\r\n" * 20000)  # 120 kB pipelined behind the slow RCPT
    assert client.transport.producerState == "paused"
    client.clock.advance(1)
    assert client.transport.producerState == "producing"
    out = client.read()
    assert out.startswith(b"250 2.1.5 Recipient OK\r\n250 2.0.0 OK\r\n")
    assert out.count(b"250 2.0.0 OK\r\n") == 20000


def test_data_without_valid_recipients(client: Client) -> None:
    assert client.codes(b"EHLO c\r\nMAIL FROM:<>\r\nRCPT TO:<x@elsewhere.org>\r\nDATA\r\n") == [
        "250", "250", "554", "554"]


def test_sequence_errors(client: Client) -> None:
    assert client.codes(b"MAIL FROM:<a@b>\r\n") == ["503"]
    assert client.codes(b"EHLO c\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n") == ["250", "503", "503"]
    assert client.codes(b"MAIL FROM:<a@b>\r\nMAIL FROM:<a@b>\r\n") == ["250", "503"]
    assert client.codes(b"RSET\r\nRCPT TO:<alice@example.com>\r\n") == ["250", "503"]


def test_size_refused_early_and_late(client: Client) -> None:
    client.send(b"EHLO c\r\n")
    assert client.send(b"MAIL FROM:<a@b> SIZE=5000\r\n").startswith(b"552 5.3.4")
    assert client.codes(b"MAIL FROM:<a@b> SIZE=500\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n") == [
        "250", "250", "354"]
    out = client.send(b"x" * 900 + b"\r\n" + b"y" * 200 + b"\r\n.\r\n")
    assert out.startswith(b"552 5.3.4")
    assert client.backend.accepted == []
    assert client.codes(b"NOOP\r\n") == ["250"]


def test_long_text_line_refused(client: Client) -> None:
    client.backend.max_message_size = 10000
    client.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@example.com>\r\nDATA\r\n")
    assert client.send(b"a" * 1200 + b"\r\n.\r\n") == b"500 5.5.2 Line too long\r\n"


def test_bdat(client: Client) -> None:
    client.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@example.com>\r\n")
    out = client.send(b"BDAT 12\r\nSubject: x\r\nBDAT 9 LAST\r\n\r\n.\r\nhi\r\n")
    assert out == b"250 2.0.0 12 octets received\r\n250 2.0.0 OK: queued as ID\r\n"
    assert client.backend.accepted[0][1] == b"Subject: x\r\n\r\n.\r\nhi\r\n"


def test_bdat_without_transaction_consumes_chunk(client: Client) -> None:
    client.send(b"EHLO c\r\n")
    assert client.codes(b"BDAT 9 LAST\r\nRSET\r\nxxxNOOP\r\n") == ["503", "250"]
    assert client.codes(b"NOOP\r\n") == ["250"]


def test_bdat_then_data_is_bad_sequence(client: Client) -> None:
    client.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@example.com>\r\n")
    assert client.codes(b"BDAT 3\r\nabcDATA\r\n") == ["250", "503"]


def test_too_many_recipients(client: Client) -> None:
    client.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\n")
    assert client.codes(b"RCPT TO:<alice@example.com>\r\n" * 4) == ["250", "250", "250", "452"]


def test_error_limit_closes(client: Client) -> None:
    out = client.send(b"BOGUS\r\n" * (MAX_ERRORS + 5))
    lines = out.split(b"\r\n")
    assert lines[MAX_ERRORS - 1].startswith(b"500")
    assert lines[MAX_ERRORS].startswith(b"421 4.7.0")
    assert client.transport.disconnecting


def test_idle_timeout(client: Client) -> None:
    client.send(b"EHLO c\r\n")
    client.clock.advance(299)
    assert not client.transport.disconnecting
    client.clock.advance(2)
    assert client.read().startswith(b"421 4.4.2")
    assert client.transport.disconnecting


def test_starttls_discards_injected_plaintext(client: Client) -> None:
    client.send(b"EHLO c\r\n")
    out = client.send(b"STARTTLS\r\nRSET\r\nMAIL FROM:<evil@x>\r\n")
    assert out == b"220 2.0.0 Ready to start TLS\r\n"
    assert client.tls_started
    # state reset: EHLO needed again, the injected MAIL was never run
    assert client.codes(b"MAIL FROM:<a@b>\r\n") == ["503"]
    out = client.send(b"EHLO c\r\n")
    assert b"STARTTLS" not in out


def test_line_too_long_command(client: Client) -> None:
    assert client.send(b"NOOP " + b"x" * 600 + b"\r\n").startswith(b"500 5.5.2")
    assert client.codes(b"NOOP\r\n") == ["250"]


def test_utf8_address_needs_smtputf8(client: Client) -> None:
    client.send(b"EHLO c\r\n")
    assert client.send("MAIL FROM:<用户@例子.广告>\r\n".encode()).startswith(b"553 5.6.7")
    assert client.codes("MAIL FROM:<用户@例子.广告> SMTPUTF8\r\n".encode()) == ["250"]


def test_dsn_parameters_kept(client: Client) -> None:
    client.send(b"EHLO c\r\n")
    assert client.codes(b"MAIL FROM:<a@b> RET=HDRS ENVID=abc+2Bd\r\n"
                        b"RCPT TO:<alice@example.com> NOTIFY=SUCCESS,DELAY"
                        b" ORCPT=rfc822;alice+40example.com\r\n"
                        b"DATA\r\n") == ["250", "250", "354"]
    client.send(b"x\r\n.\r\n")
    envelope = client.backend.accepted[0][0]
    assert (envelope.ret, envelope.envid) == ("HDRS", "abc+d")
    assert envelope.recipients[0].notify == ("SUCCESS", "DELAY")
    assert envelope.recipients[0].orcpt == "rfc822;alice@example.com"
    assert client.codes(b"MAIL FROM:<a@b> RET=MAYBE\r\nMAIL FROM:<a@b> FOO=1\r\n") == ["501", "555"]


def test_helo_has_no_extensions(client: Client) -> None:
    assert client.send(b"HELO c\r\n") == b"250 mx.test\r\n"
    assert client.codes(b"MAIL FROM:<a@b> SIZE=10\r\n") == ["555"]


def test_postmaster_without_domain(client: Client) -> None:
    client.backend.check_recipient = lambda address, info, env: (replies.RECIPIENT_OK, address)
    client.send(b"EHLO c\r\nMAIL FROM:<>\r\n")
    assert client.codes(b"RCPT TO:<Postmaster>\r\n") == ["250"]


# --- submission --------------------------------------------------------------


@pytest.fixture
def submission(tmp_path: Any) -> Client:
    c = Client(tmp_path, mode="submission")
    c.read()
    c.send(b"EHLO c\r\n")
    return c


def _b64(data: bytes) -> bytes:
    return base64.b64encode(data)


def test_auth_plain_initial_response(submission: Client) -> None:
    assert submission.codes(b"MAIL FROM:<alice@example.com>\r\n") == ["530"]
    out = submission.send(b"AUTH PLAIN " + _b64(b"\0alice@example.com\0pw") + b"\r\n")
    assert out == b"235 2.7.0 Authentication successful\r\n"
    assert submission.codes(b"AUTH PLAIN\r\n") == ["503"]


def test_auth_plain_challenge_and_failure(submission: Client) -> None:
    assert submission.send(b"AUTH PLAIN\r\n") == b"334 \r\n"
    assert submission.send(_b64(b"\0alice@example.com\0wrong") + b"\r\n").startswith(b"535 5.7.8")


def test_auth_login(submission: Client) -> None:
    assert submission.send(b"AUTH LOGIN\r\n") == b"334 VXNlcm5hbWU6\r\n"
    assert submission.send(_b64(b"alice@example.com") + b"\r\n") == b"334 UGFzc3dvcmQ6\r\n"
    assert submission.send(_b64(b"pw") + b"\r\n").startswith(b"235")


def test_auth_login_initial_response_and_cancel(submission: Client) -> None:
    assert submission.send(b"AUTH LOGIN " + _b64(b"alice@example.com") + b"\r\n") == b"334 UGFzc3dvcmQ6\r\n"
    assert submission.send(b"*\r\n").startswith(b"501 5.7.0")
    assert submission.send(b"AUTH PLAIN !!!\r\n").startswith(b"501")
    assert submission.send(b"AUTH CRAM-MD5\r\n").startswith(b"504")


def test_starttls_after_auth_releases_the_login(submission: Client) -> None:
    """RFC 3207 §4.2: STARTTLS forgets the login; its lease (and with it
    the user's session slot) goes back at once (issue 14)."""
    submission.send(b"AUTH PLAIN " + _b64(b"\0alice@example.com\0pw") + b"\r\n")
    assert submission.send(b"STARTTLS\r\n").startswith(b"220")
    assert submission.tls_started and submission.backend.released == ["alice@example.com"]
    assert submission.codes(b"EHLO c\r\nMAIL FROM:<alice@example.com>\r\n") == ["250", "530"]
    submission.protocol.connectionLost(None)
    assert submission.backend.released == ["alice@example.com"]  # once


def test_connection_lost_releases_the_login(submission: Client) -> None:
    submission.send(b"AUTH PLAIN " + _b64(b"\0alice@example.com\0pw") + b"\r\n")
    submission.protocol.connectionLost(None)
    assert submission.backend.released == ["alice@example.com"]


def test_auth_with_another_authzid_is_passed_on(submission: Client) -> None:
    out = submission.send(b"AUTH PLAIN " + _b64(b"Alice@Example.com\0alice@example.com\0pw") + b"\r\n")
    assert out.startswith(b"235")  # the same identity: no authzid
    assert submission.backend.leases[-1].address == "alice@example.com"


def test_auth_not_offered_without_tls_to_remote(tmp_path: Any) -> None:
    c = Client(tmp_path, mode="submission", ip="192.0.2.7")
    c.backend.loopback = False
    c.read()
    out = c.send(b"EHLO c\r\n")
    assert b"AUTH" not in out and b"STARTTLS" in out
    assert c.send(b"AUTH PLAIN " + _b64(b"\0alice@example.com\0pw") + b"\r\n").startswith(b"538 5.7.11")
    assert c.send(b"MAIL FROM:<alice@example.com>\r\n").startswith(b"530 5.7.0 Must issue a STARTTLS")


def test_spoofed_sender_and_send_limit(submission: Client) -> None:
    submission.send(b"AUTH PLAIN " + _b64(b"\0alice@example.com\0pw") + b"\r\n")
    assert submission.send(b"MAIL FROM:<bob@example.com>\r\n").startswith(b"553 5.7.1")
    for _ in range(2):
        assert submission.codes(b"MAIL FROM: <alice@example.com>\r\nRCPT TO:<bob@example.com>\r\n"
                                b"DATA\r\n") == ["250", "250", "354"]
        assert submission.codes(b"From: alice@example.com\r\n\r\nx\r\n.\r\n") == ["250"]
    assert submission.send(b"MAIL FROM:<alice@example.com>\r\n").startswith(b"450 4.7.1")


def test_mx_refuses_auth(client: Client) -> None:
    client.send(b"EHLO c\r\n")
    assert client.send(b"AUTH PLAIN AGFAYg==\r\n").startswith(b"503 5.5.1")


# --- robustness ----------------------------------------------------------------


commands = st.sampled_from([
    b"EHLO x", b"HELO x", b"MAIL FROM:<a@b>", b"MAIL FROM:<>", b"RCPT TO:<alice@example.com>",
    b"RCPT TO:<z@remote>", b"DATA", b"BDAT 5", b"BDAT 3 LAST", b"RSET", b"NOOP", b"VRFY x", b"AUTH LOGIN",
    b"AUTH PLAIN", b"STARTTLS", b"HELP", b".", b"", b"MAIL FROM:<a@b> SIZE=x", b"\xff\xfe", b"QUIT",
])


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(commands, st.binary(max_size=40)), max_size=30),
       st.sampled_from(["mx", "submission"]))
def test_random_input_gives_well_formed_replies(tmp_path_factory: Any, lines: list[bytes], mode: str) -> None:
    c = Client(tmp_path_factory.mktemp("s"), mode=mode)
    logged: list[Any] = []
    from twisted.logger import globalLogPublisher

    def observer(event: dict) -> None:
        if event.get("log_failure") is not None:
            logged.append(event)

    globalLogPublisher.addObserver(observer)
    try:
        c.protocol.dataReceived(b"\r\n".join(lines) + b"\r\n")
        c.clock.advance(1000)
    finally:
        globalLogPublisher.removeObserver(observer)
    assert logged == []
    out = c.transport.value()
    for line in out.split(b"\r\n")[:-1]:
        assert REPLY_LINE.match(line + b"\r\n"), line


def test_shutdown_closes_idle_sessions_with_421(client: Client) -> None:
    client.send(b"EHLO c\r\n")
    client.factory.doStart()
    client.factory.doStop()
    assert client.read() == b"421 4.3.2 mx.test Service shutting down, closing connection\r\n"
    assert client.transport.disconnecting


def test_shutdown_lets_the_current_command_finish(client: Client) -> None:
    client.backend.delay = 1.0
    client.send(b"EHLO c\r\nMAIL FROM:<a@b>\r\nRCPT TO:<alice@example.com>\r\n")
    client.read()
    client.factory.doStart()
    client.factory.doStop()
    assert not client.transport.disconnecting
    client.clock.advance(1)
    assert client.read() == (b"250 2.1.5 Recipient OK\r\n"
                             b"421 4.3.2 mx.test Service shutting down, closing connection\r\n")
    assert client.transport.disconnecting
