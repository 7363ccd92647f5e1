# -*- test-case-name: tests.queue.test_client -*-
"""The client protocol and session on a StringTransport with a task.Clock:
exact bytes on the wire, pipelining groups, timeouts, STARTTLS rules."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import task
from twisted.internet.testing import StringTransport

from xmail.queue.client import (
    GREETING_TIMEOUT,
    ConnectionClosed,
    Envelope,
    ESMTPSession,
    OutboundRecipient,
    SessionError,
    SMTPClientProtocol,
    SMTPTimeout,
    xtext,
)
from xmail.queue.reply import ReplyProtocolError


class TLSStringTransport(StringTransport):
    tls_started = None

    def startTLS(self, context: Any) -> None:
        self.tls_started = context


def connected() -> tuple[SMTPClientProtocol, TLSStringTransport, task.Clock]:
    clock = task.Clock()
    client = SMTPClientProtocol(clock)
    transport = TLSStringTransport()
    client.makeConnection(transport)
    return client, transport, clock


def written(transport: StringTransport) -> list[bytes]:
    data = transport.value()
    transport.clear()
    return data.split(b"\r\n")[:-1]


def pump(transport: StringTransport) -> None:
    """A pull producer (FileSender) runs only when the consumer asks."""
    while transport.producer is not None:
        transport.producer.resumeProducing()


def result_of(d: Any) -> Any:
    out: list[Any] = []
    d.addBoth(out.append)
    assert out, "Deferred has not fired"
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


EHLO_FULL = b"250-mx.test\r\n250-PIPELINING\r\n250-SIZE 1000\r\n250-DSN\r\n250-8BITMIME\r\n250 SMTPUTF8\r\n"


def open_session(ehlo: bytes = EHLO_FULL, **kw: Any) -> tuple[ESMTPSession, TLSStringTransport, Any]:
    client, transport, clock = connected()
    session = ESMTPSession(client, "mx.test", "mail.example.com", **kw)
    d = session.open()
    client.dataReceived(b"220 mx.test ESMTP\r\n")
    assert written(transport) == [b"EHLO mail.example.com"]
    client.dataReceived(ehlo)
    return session, transport, d


def envelope(path: str, *rcpts: str, size: int = 10, **kw: Any) -> Envelope:
    return Envelope("alice@example.com", tuple(OutboundRecipient(r) for r in rcpts), path, size, **kw)


@pytest.fixture
def message(tmp_path):
    path = tmp_path / "m.eml"
    path.write_bytes(b"Subject: x\r\n\r\n.hidden\r\n")
    return str(path)


def test_pipelined_transaction_and_per_recipient_outcomes(message):
    session, transport, d = open_session()
    result_of(d)
    assert session.extensions["SIZE"] == "1000"
    out = session.deliver(envelope(message, "bob@other.test", "nobody@other.test", "grey@other.test",
                                   envid="e+1", ret="full"))
    # RFC 2920: one group, DATA last.
    assert written(transport) == [
        b"MAIL FROM:<alice@example.com> SIZE=10 BODY=8BITMIME RET=FULL ENVID=e+2B1",
        b"RCPT TO:<bob@other.test> ORCPT=rfc822;bob@other.test",
        b"RCPT TO:<nobody@other.test> ORCPT=rfc822;nobody@other.test",
        b"RCPT TO:<grey@other.test> ORCPT=rfc822;grey@other.test",
        b"DATA",
    ]
    session.client.dataReceived(b"250 ok\r\n250 ok\r\n550 5.1.1 unknown\r\n451 4.7.1 grey\r\n354 go\r\n")
    pump(transport)
    assert transport.value() == b"Subject: x\r\n\r\n..hidden\r\n.\r\n"
    transport.clear()
    session.client.dataReceived(b"250 2.0.0 queued as X\r\n")
    outcomes = result_of(out)
    assert [(o.kind, o.status) for o in outcomes] == [
        ("sent", "2.0.0"), ("permanent", "5.1.1"), ("temporary", "4.7.1")]
    assert outcomes[1].diagnostic == "550 5.1.1 unknown" and outcomes[1].remote_mta == "mx.test"
    assert not outcomes[0].relayed_without_dsn


def test_sequential_without_pipelining_stops_after_refused_mail(message):
    session, transport, d = open_session(b"250 mx.test\r\n")
    result_of(d)
    out = session.deliver(envelope(message, "bob@other.test"))
    assert written(transport) == [b"MAIL FROM:<alice@example.com>"]
    session.client.dataReceived(b"451 4.3.0 try later\r\n")
    assert written(transport) == [b"RSET"]
    session.client.dataReceived(b"250 ok\r\n")
    (outcome,) = result_of(out)
    assert outcome.kind == "temporary" and outcome.status == "4.3.0"


def test_no_recipient_accepted_sends_no_data(message):
    session, transport, d = open_session(b"250-mx.test\r\n250 DSN\r\n")
    result_of(d)
    out = session.deliver(envelope(message, "a@other.test"))
    assert written(transport) == [b"MAIL FROM:<alice@example.com>"]
    session.client.dataReceived(b"250 ok\r\n")
    assert written(transport) == [b"RCPT TO:<a@other.test> ORCPT=rfc822;a@other.test"]
    session.client.dataReceived(b"550 5.1.1 no\r\n")
    assert written(transport) == [b"RSET"]
    session.client.dataReceived(b"250 ok\r\n")
    assert [o.kind for o in result_of(out)] == ["permanent"]


def test_pipelined_data_accepted_without_recipients_gets_an_empty_message(message):
    session, transport, d = open_session()
    result_of(d)
    out = session.deliver(envelope(message, "a@other.test"))
    written(transport)
    session.client.dataReceived(b"250 ok\r\n550 no\r\n354 go\r\n")
    assert written(transport) == [b"."]
    session.client.dataReceived(b"554 no valid recipients\r\n")
    assert written(transport) == [b"RSET"]
    session.client.dataReceived(b"250 ok\r\n")
    assert [o.kind for o in result_of(out)] == ["permanent"]


def test_size_and_smtputf8_refused_before_mail(message):
    session, transport, d = open_session(b"250-mx.test\r\n250 SIZE 5\r\n")
    result_of(d)
    (o,) = result_of(session.deliver(envelope(message, "bob@other.test", size=6)))
    assert (o.kind, o.status) == ("permanent", "5.3.4")
    (o,) = result_of(session.deliver(envelope(message, "björn@other.test", size=1)))
    assert (o.kind, o.status) == ("permanent", "5.6.7")
    assert transport.value() == b""


def test_success_without_dsn_support_is_marked_relayed(message):
    session, transport, d = open_session(b"250 mx.test\r\n")
    result_of(d)
    out = session.deliver(envelope(message, "bob@other.test"))
    session.client.dataReceived(b"250 ok\r\n")
    session.client.dataReceived(b"250 ok\r\n")
    session.client.dataReceived(b"354 go\r\n")
    pump(transport)
    session.client.dataReceived(b"250 ok\r\n")
    (o,) = result_of(out)
    assert o.kind == "sent" and o.relayed_without_dsn


def test_starttls_then_ehlo_again_and_extensions_forgotten():
    client, transport, clock = connected()
    session = ESMTPSession(client, "mx.test", "me.test", tls_context=lambda host: ("ctx", host))
    d = session.open()
    client.dataReceived(b"220 hi\r\n")
    written(transport)
    client.dataReceived(b"250-mx.test\r\n250-STARTTLS\r\n250 PIPELINING\r\n")
    assert written(transport) == [b"STARTTLS"]
    client.dataReceived(b"220 go ahead\r\n")
    assert transport.tls_started == ("ctx", "mx.test")
    assert written(transport) == [b"EHLO me.test"]
    client.dataReceived(b"250-mx.test\r\n250 8BITMIME\r\n")
    result_of(d)
    assert session.encrypted and session.extensions == {"8BITMIME": ""}


def test_plaintext_injected_after_starttls_reply_is_refused():
    client, transport, clock = connected()
    session = ESMTPSession(client, "mx.test", "me.test", tls_context=lambda host: "ctx")
    d = session.open()
    client.dataReceived(b"220 hi\r\n")
    client.dataReceived(b"250-mx.test\r\n250 STARTTLS\r\n")
    written(transport)
    client.dataReceived(b"220 go ahead\r\n250 injected\r\n")
    with pytest.raises(ReplyProtocolError):
        result_of(d)
    assert transport.tls_started is None


def test_required_tls_not_offered():
    client, transport, clock = connected()
    session = ESMTPSession(client, "relay.test", "me.test", tls_context=lambda h: "ctx", require_tls=True)
    d = session.open()
    client.dataReceived(b"220 hi\r\n250 relay.test\r\n")
    with pytest.raises(SessionError) as e:
        result_of(d)
    assert e.value.temporary and e.value.status == "4.7.0"


def test_helo_fallback_and_bad_greeting():
    session, transport, d = open_session(b"502 5.5.2 what is EHLO\r\n")
    assert written(transport) == [b"HELO mail.example.com"]
    session.client.dataReceived(b"250 ok\r\n")
    result_of(d)
    assert session.extensions == {}
    client, transport, clock = connected()
    d = ESMTPSession(client, "mx.test", "me").open()
    client.dataReceived(b"554 go away\r\n")
    with pytest.raises(SessionError):
        result_of(d)


def test_greeting_timeout_aborts():
    client, transport, clock = connected()
    d = client.greeting
    clock.advance(GREETING_TIMEOUT - 1)
    assert not d.called
    clock.advance(1)
    with pytest.raises(SMTPTimeout):
        result_of(d)
    assert transport.disconnecting or transport.disconnected


def test_garbage_reply_aborts_and_fails_waiters():
    client, transport, clock = connected()
    client.dataReceived(b"220 hi\r\n")
    d = client.send(b"NOOP")
    client.dataReceived(b"HTTP/1.1 400 Bad Request\r\n")
    with pytest.raises(ReplyProtocolError):
        result_of(d)


def test_connection_lost_fails_waiters():
    client, transport, clock = connected()
    client.dataReceived(b"220 hi\r\n")
    d = client.send(b"NOOP")
    client.connectionLost()
    with pytest.raises(ConnectionClosed):
        result_of(d)


def test_unsolicited_reply_is_a_protocol_error():
    client, transport, clock = connected()
    client.dataReceived(b"220 hi\r\n250 surprise\r\n")
    assert transport.disconnecting or transport.disconnected


def test_xtext():
    assert xtext("a+b=c d@x") == "a+2Bb+3Dc+20d@x"
    assert xtext("é") == "+C3+A9"


def test_large_message_streams_with_dot_stuffing_across_chunks(tmp_path):
    from xmail.queue.client import SMALL_MESSAGE

    line = b"." + b"x" * 76 + b"\r\n"  # every line needs stuffing; chunks split lines
    data = line * (SMALL_MESSAGE // len(line) + 50)
    path = tmp_path / "big.eml"
    path.write_bytes(data)
    session, transport, d = open_session(b"250-mx.test\r\n250 PIPELINING\r\n")
    result_of(d)
    out = session.deliver(envelope(str(path), "bob@other.test", size=len(data)))
    written(transport)
    session.client.dataReceived(b"250 ok\r\n250 ok\r\n354 go\r\n")
    pump(transport)
    sent = transport.value()
    assert sent == data.replace(b"\r\n.", b"\r\n..").replace(b".", b"..", 1) + b".\r\n"
    session.client.dataReceived(b"250 ok\r\n")
    assert [o.kind for o in result_of(out)] == ["sent"]
