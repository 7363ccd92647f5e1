# -*- test-case-name: tests.protocols.test_smtp_transaction -*-
"""The SMTP mail transaction as one explicit state (`Tx`, RFC 5321 §3.3,
RFC 3030 §2): each transition, RSET from each state, and the byte-exact
reply for each command refused by the gate in each state."""

from __future__ import annotations

from typing import Any

import pytest

from tests.protocols.test_smtp_session import Client
from xmail.protocols.smtp.session import Tx

FROM = b"MAIL FROM:<a@b>\r\n"
TO = b"RCPT TO:<alice@example.com>\r\n"


@pytest.fixture
def client(tmp_path: Any) -> Client:
    c = Client(tmp_path)
    c.read()
    assert c.send(b"EHLO c\r\n").startswith(b"250-")
    return c


def tx(client: Client) -> Tx:
    return client.protocol.session.tx


def test_data_transaction_walks_the_states(client: Client) -> None:
    assert tx(client) is Tx.IDLE
    assert client.send(FROM) == b"250 2.1.0 Sender OK\r\n"
    assert tx(client) is Tx.MAIL
    assert client.send(b"RCPT TO:<nobody@example.com>\r\n").startswith(b"550 5.1.1")
    assert tx(client) is Tx.MAIL  # a refused recipient changes nothing
    assert client.send(TO) == b"250 2.1.5 Recipient OK\r\n"
    assert tx(client) is Tx.RCPT
    assert client.send(b"DATA\r\n") == b"354 End data with <CR><LF>.<CR><LF>\r\n"
    assert tx(client) is Tx.DATA
    assert client.send(b"hi\r\n.\r\n") == b"250 2.0.0 OK: queued as ID\r\n"
    assert tx(client) is Tx.IDLE


def test_bdat_transaction_walks_the_states(client: Client) -> None:
    client.send(FROM + TO)
    assert client.send(b"BDAT 3\r\nabc") == b"250 2.0.0 3 octets received\r\n"
    assert tx(client) is Tx.BDAT
    assert client.send(b"BDAT 0 LAST\r\n") == b"250 2.0.0 OK: queued as ID\r\n"
    assert tx(client) is Tx.IDLE
    assert client.backend.accepted[0][1] == b"abc"


def _to_state(client: Client, state: Tx) -> None:
    client.backend.max_message_size = 10
    steps = {
        Tx.IDLE: b"",
        Tx.MAIL: FROM,
        Tx.RCPT: FROM + TO,
        Tx.BDAT: FROM + TO + b"BDAT 2\r\nab",
        Tx.BDAT_FAILED: FROM + TO + b"BDAT 20\r\n" + b"x" * 20,
    }
    client.send(steps[state])
    assert tx(client) is state


@pytest.mark.parametrize("state", [Tx.IDLE, Tx.MAIL, Tx.RCPT, Tx.BDAT, Tx.BDAT_FAILED])
def test_rset_from_each_state(client: Client, state: Tx) -> None:
    _to_state(client, state)
    assert client.send(b"RSET\r\n") == b"250 2.0.0 Reset OK\r\n"
    assert tx(client) is Tx.IDLE
    assert client.protocol.session.envelope is None and client.protocol.session.spool is None
    # a new transaction starts cleanly
    client.backend.max_message_size = 1000
    assert client.send(FROM + TO + b"BDAT 2 LAST\r\nok").endswith(b"250 2.0.0 OK: queued as ID\r\n")


@pytest.mark.parametrize("state", [Tx.IDLE, Tx.MAIL, Tx.RCPT, Tx.BDAT, Tx.BDAT_FAILED])
def test_ehlo_from_each_state_resets(client: Client, state: Tx) -> None:
    _to_state(client, state)
    assert client.send(b"EHLO c\r\n").startswith(b"250-")
    assert tx(client) is Tx.IDLE


# The gate's refusals, byte-exact, per (state, command): RFC 5321 §4.1.4,
# RFC 2920 §3.1, RFC 3030 §3, RFC 4954 §4.
NEED_MAIL = b"503 5.5.1 Need MAIL command first\r\n"
NESTED = b"503 5.5.1 Sender already given\r\n"
SEQUENCE = b"503 5.5.1 Bad sequence of commands\r\n"
NO_VALID = b"554 5.5.1 No valid recipients\r\n"


@pytest.mark.parametrize("state, line, reply", [
    (Tx.IDLE, TO, NEED_MAIL),
    (Tx.IDLE, b"DATA\r\n", NEED_MAIL),
    (Tx.MAIL, FROM, NESTED),
    (Tx.MAIL, b"DATA\r\n", NO_VALID),
    (Tx.RCPT, FROM, NESTED),
    (Tx.BDAT, FROM, NESTED),
    (Tx.BDAT, b"DATA\r\n", SEQUENCE),  # DATA after BDAT (RFC 3030 §3)
    (Tx.BDAT, TO, SEQUENCE),  # a recipient among the chunks: was accepted
    (Tx.BDAT_FAILED, b"DATA\r\n", SEQUENCE),
    (Tx.BDAT_FAILED, TO, SEQUENCE),
])
def test_gate_refusal_per_state(client: Client, state: Tx, line: bytes, reply: bytes) -> None:
    _to_state(client, state)
    assert client.send(line) == reply
    assert tx(client) is state  # a refusal leaves the transaction as it was


def test_bdat_failed_refuses_the_rest_until_last(client: Client) -> None:
    _to_state(client, Tx.BDAT_FAILED)
    too_big = b"552 5.3.4 Message size exceeds fixed maximum message size\r\n"
    assert client.send(b"BDAT 1\r\nx") == too_big
    assert tx(client) is Tx.BDAT_FAILED
    assert client.send(b"BDAT 1 LAST\r\nx") == too_big
    assert tx(client) is Tx.IDLE
    assert client.backend.accepted == []


def test_bdat_after_data_is_a_new_transaction(client: Client) -> None:
    """The message sent with DATA ends the transaction: a BDAT right after
    it has no envelope, its chunk is read and refused (RFC 3030 §2)."""
    client.send(FROM + TO + b"DATA\r\n")
    assert client.send(b"x\r\n.\r\nBDAT 4 LAST\r\nNOOPNOOP\r\n") == (
        b"250 2.0.0 OK: queued as ID\r\n" + NEED_MAIL + b"250 2.0.0 OK\r\n")
    assert tx(client) is Tx.IDLE


def test_auth_in_a_transaction_is_a_sequence_error(tmp_path: Any) -> None:
    c = Client(tmp_path, mode="submission")
    c.read()
    c.send(b"EHLO c\r\nAUTH PLAIN AGFsaWNlQGV4YW1wbGUuY29tAHB3\r\n")
    assert c.send(b"MAIL FROM:<alice@example.com>\r\n").startswith(b"250")
    assert c.send(b"AUTH PLAIN AGFAYg==\r\n") == SEQUENCE
