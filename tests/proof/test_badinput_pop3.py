# -*- test-case-name: tests.proof.test_badinput_pop3 -*-
"""Bad input over a real socket to a running POP3 server.

Hypothesis generates command lines (known keywords with hostile arguments,
random bytes, over-long lines, SASL exchanges) in the AUTHORIZATION and the
TRANSACTION state.  For every example:

- no exception escapes the server (twisted.logger observer in this process);
- every status line is `+OK`/`-ERR` [SP text] CRLF with printable text
  (RFC 1939 §3), a multi-line response ends with "." CRLF, a SASL challenge
  is "+ " [base64] CRLF (RFC 5034 §4);
- every command line gets exactly one response, in order;
- the connection is still usable afterwards (CAPA, allowed in both states,
  answers +OK) unless the server closed it, which it may do only right after
  an -ERR.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import PASSWORD
from tests.proof.support import NO_THROTTLE, LineClient, pop3_multiline, pop3_status, watch_failures
from xmail.protocols.pop3.parser import Command, parse_command

pytestmark = pytest.mark.timeout(300)

ALICE = "alice@example.com"
HYPOTHESIS = settings(max_examples=200, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

line_bytes = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b""))
hostile = st.one_of(
    line_bytes,
    st.text(max_size=60).map(lambda s: s.encode("utf-8").replace(b"\n", b"")),
    st.sampled_from([b"", b"0", b"1", b"2", b"3", b"-1", b"99999999999999999999", b"1 2", b"1 -1", b"1 0",
                     b"1 99999999999", b"\0", b"\r", b"1\r", b"a b c d e f", ALICE.encode(), b"\xff",
                     b"*", b"=", b"PLAIN", b"LOGIN", b"PLAIN =", b"PLAIN " + b"A" * 20000]),
)
KEYWORDS = [b"USER", b"PASS", b"APOP", b"STAT", b"LIST", b"RETR", b"DELE", b"NOOP", b"RSET", b"TOP",
            b"UIDL", b"CAPA", b"AUTH", b"user", b"LAST", b"XTND", b"UTF8", b"LANG", b"STLSX"]


@st.composite
def command_line(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["keyword", "keyword", "keyword", "raw", "long"]))
    if kind == "keyword":
        sep = draw(st.sampled_from([b" ", b"  ", b"\t", b""]))
        return draw(st.sampled_from(KEYWORDS)) + sep + draw(hostile)
    if kind == "long":
        return draw(st.sampled_from([b"USER ", b"PASS ", b"AUTH PLAIN ", b""])) + b"x" * draw(
            st.sampled_from([254, 1023, 1024, 1025, 16383, 16385, 70000]))
    return draw(line_bytes)


MULTILINE_ALWAYS = {"CAPA", "RETR", "TOP"}
MULTILINE_WITHOUT_ARGS = {"LIST", "UIDL", "AUTH"}


def is_multiline(line: bytes) -> bool:
    """Whether a +OK to this line starts a multi-line response (RFC 1939
    §5 LIST/UIDL without argument, RETR, TOP; RFC 2449 CAPA; RFC 5034 bare
    AUTH lists mechanisms).  The command keyword and argument count are
    read with the server's own line splitter -- framing, not behaviour."""
    command = parse_command(line[:-1] if line.endswith(b"\r") else line)
    if not isinstance(command, Command):
        return False
    return command.keyword in MULTILINE_ALWAYS or (command.keyword in MULTILINE_WITHOUT_ARGS
                                                   and not command.args)


class Closed(Exception):
    """The server closed the connection after an -ERR or QUIT (allowed)."""


def exchange(client: LineClient, line: bytes, last: bytes) -> bytes:
    """One command and its whole response -> the status line.  Raises
    Closed when the server had closed after the previous -ERR."""
    try:
        client.send(line + b"\r\n")
        status = pop3_status(client, allow_continuation=True)
    except ConnectionError:
        status = None
    if status is None:
        assert last.startswith(b"-ERR"), f"closed without a response to {line[:200]!r} after {last!r}"
        raise Closed()
    if status.startswith(b"+ ") or status == b"+\r\n":
        # A SASL challenge; "*" cancels (RFC 5034 §4) -> -ERR.
        client.send(b"*\r\n")
        status = pop3_status(client)
        assert status is not None and status.startswith(b"-ERR"), status
    elif status.startswith(b"+OK") and is_multiline(line):
        pop3_multiline(client)
    command = parse_command(line[:-1] if line.endswith(b"\r") else line)
    if isinstance(command, Command) and command.keyword == "QUIT" and status.startswith(b"+OK"):
        # RFC 1939 §6: QUIT ends the session.
        assert client.closed(), "QUIT answered +OK but the connection stayed open"
        raise Closed()
    return status


def run_session(port: int, lines: list[bytes], login: bool) -> None:
    client = LineClient(port)
    try:
        last = pop3_status(client)
        assert last is not None and last.startswith(b"+OK"), last
        if login:
            for line in (f"USER {ALICE}".encode(), f"PASS {PASSWORD}".encode()):
                client.send(line + b"\r\n")
                assert pop3_status(client).startswith(b"+OK")
        try:
            for line in lines:
                last = exchange(client, line, last)
            last = exchange(client, b"CAPA", last)
        except Closed:
            return
        assert last.startswith(b"+OK"), (lines, last)
        if login:
            # Undo DELEs: the next example sees the same maildrop.
            client.send(b"RSET\r\n")
            assert pop3_status(client).startswith(b"+OK")
    finally:
        client.close()


@pytest.fixture
def pop3_server(make_server: Any) -> Any:
    srv = make_server(NO_THROTTLE)
    srv.add_domain("example.com")
    srv.add_user(ALICE)
    for i in range(3):
        source = (f"From: x@remote.test\r\nSubject: m{i}\r\n\r\n" + ".dot line\r\n" * i + "body\r\n").encode()
        srv.call(srv.ctx.store.deliver, ALICE, source)
    return srv


def test_generated_command_lines(pop3_server: Any) -> None:
    port = pop3_server.port("pop3")
    with watch_failures() as watch:

        @HYPOTHESIS
        @given(lines=st.lists(command_line(), min_size=1, max_size=6), login=st.booleans())
        def check(lines: list[bytes], login: bool) -> None:
            run_session(port, lines, login)

        check()
        watch.check()


def test_sasl_responses_with_garbage(pop3_server: Any) -> None:
    """Random SASL client responses after AUTH PLAIN / AUTH LOGIN get a
    well-formed answer and leave the session usable (or closed after the
    failure limit, RFC 5034 §4 lets the server do that)."""
    port = pop3_server.port("pop3")
    with watch_failures() as watch:

        @HYPOTHESIS
        @given(mechanism=st.sampled_from([b"PLAIN", b"LOGIN"]),
               responses=st.lists(st.one_of(line_bytes, line_bytes.map(base64.b64encode)), min_size=1,
                                  max_size=3))
        def check(mechanism: bytes, responses: list[bytes]) -> None:
            client = LineClient(port)
            try:
                assert pop3_status(client).startswith(b"+OK")
                client.send(b"AUTH " + mechanism + b"\r\n")
                status = pop3_status(client, allow_continuation=True)
                for response in responses:
                    if not status.startswith(b"+ ") and status != b"+\r\n":
                        break
                    client.send(response + b"\r\n")
                    status = pop3_status(client, allow_continuation=True)
                    assert status is not None
                if status.startswith(b"+ ") or status == b"+\r\n":
                    client.send(b"*\r\n")
                    status = pop3_status(client)
                assert status.startswith(b"-ERR") or status.startswith(b"+OK"), status
                try:
                    assert exchange(client, b"CAPA", status).startswith(b"+OK")
                except Closed:
                    pass
            finally:
                client.close()

        check()
        watch.check()


def test_auth_mechanism_is_not_echoed_raw(pop3_server: Any) -> None:
    client = LineClient(pop3_server.port("pop3"))
    try:
        assert pop3_status(client).startswith(b"+OK")
        for mechanism in (b"\x01", b"\x1b[2J", "\u00e9".encode()):
            client.send(b"AUTH " + mechanism + b"\r\n")
            status = pop3_status(client)
            assert status.startswith(b"-ERR")
    finally:
        client.close()
