# -*- test-case-name: tests.proof.test_badinput_smtp -*-
"""Bad input over a real socket to a running SMTP server (MX and submission).

Hypothesis generates command lines: known verbs with hostile arguments
(NUL, bare CR, 8-bit bytes, over-long, unbalanced brackets, ESMTP parameters
with junk) and plain random byte lines.  For every example:

- no exception escapes the server (a twisted.logger observer in this
  process, where the fixture server runs, sees no failure or error event);
- every reply is well formed (RFC 5321 §4.2: a 3-digit code, "-" on every
  line but the last, printable text, CRLF, the same code on every line);
- each command line gets exactly one reply, in order;
- the connection is still usable afterwards (NOOP -> 250) unless the server
  ended it with 421/221, after which it must actually close.
"""

from __future__ import annotations

import base64
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import PASSWORD
from tests.proof.support import NO_THROTTLE, LineClient, smtp_reply, watch_failures

pytestmark = pytest.mark.timeout(300)

ALICE = "alice@example.com"
HYPOTHESIS = settings(max_examples=200, deadline=None,
                      suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

# Line content: anything but LF (a bare LF ends a command line, RFC 5321
# §2.3.8 tolerance), so one generated line is one command.
line_bytes = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b""))
hostile_text = st.one_of(
    line_bytes,
    st.text(max_size=80).map(lambda s: s.encode("utf-8").replace(b"\n", b"")),
    st.sampled_from([b"", b" ", b"\0", b"\r", b"<>", b"<", b">", b"<<a@b>>", b"<@a,@b:c@d>", b"\"a b\"@c",
                     b"a@[127.0.0.1]", b"a@[IPv6:::1]", b"a@example.com\rX: y", b"\xff\xfe", b"\x1b[2J",
                     b"../../etc/passwd", b"a" * 70 + b"@example.com", b"a" * 300 + b"@example.com"]),
)
address = st.one_of(
    st.sampled_from([b"<alice@example.com>", b"<>", b"<bob@example.com>", b"<nobody@example.com>"]),
    hostile_text.map(lambda t: b"<" + t + b">"),
    hostile_text,
)
params = st.lists(st.one_of(
    st.sampled_from([b"SIZE=100", b"SIZE=99999999999999999999", b"SIZE=-1", b"BODY=8BITMIME", b"BODY=JUNK",
                     b"SMTPUTF8", b"RET=FULL", b"ENVID=x", b"NOTIFY=NEVER,SUCCESS", b"ORCPT=rfc822;a@b",
                     b"AUTH=<>", b"=", b"X=" + b"y" * 600]),
    hostile_text.map(lambda t: t.replace(b" ", b"")),
), max_size=4)


@st.composite
def command_line(draw: Any) -> bytes:
    kind = draw(st.sampled_from(["helo", "mail", "rcpt", "simple", "auth", "raw", "long"]))
    if kind == "helo":
        return draw(st.sampled_from([b"HELO", b"EHLO", b"helo", b"LHLO"])) + b" " + draw(hostile_text)
    if kind == "mail":
        return b"MAIL FROM:" + draw(address) + b"".join(b" " + p for p in draw(params))
    if kind == "rcpt":
        return b"RCPT TO:" + draw(address) + b"".join(b" " + p for p in draw(params))
    if kind == "simple":
        verb = draw(st.sampled_from([b"RSET", b"NOOP", b"VRFY", b"EXPN", b"HELP", b"ETRN", b"TURN",
                                     b"DATA", b"mail", b"RCPT", b"MAIL FROM", b"XCLIENT", b"STARTTL"]))
        return verb + draw(st.sampled_from([b"", b" "])) + draw(hostile_text)
    if kind == "auth":
        mech = draw(st.sampled_from([b"PLAIN", b"LOGIN", b"CRAM-MD5", b"XOAUTH2", b"plain", b""]))
        initial = draw(st.one_of(
            st.just(b""), st.just(b" ="), hostile_text.map(lambda t: b" " + t),
            hostile_text.map(lambda t: b" " + base64.b64encode(t)),
            st.tuples(hostile_text, hostile_text).map(
                lambda up: b" " + base64.b64encode(b"\0" + up[0] + b"\0" + up[1]))))
        return b"AUTH " + mech + initial
    if kind == "long":
        return draw(st.sampled_from([b"HELO ", b"MAIL FROM:<", b"RCPT TO:<", b"NOOP ", b""])) + b"a" * draw(
            st.sampled_from([511, 513, 1001, 12287, 12289, 70000]))
    return draw(line_bytes)


def exchange(client: LineClient, line: bytes, codes: list[int]) -> bool:
    """Send one command line, read its reply (answering AUTH challenges and
    closing DATA); False once the server has ended the session."""
    client.send(line + b"\r\n")
    reply = smtp_reply(client)
    if reply is None:
        raise AssertionError(f"connection closed without a reply to {line[:200]!r}")
    code, _ = reply
    codes.append(code)
    if code == 334:
        # RFC 4954 §4: "*" cancels; the server must answer 501.
        client.send(b"*\r\n")
        reply = smtp_reply(client)
        assert reply is not None and reply[0] == 501, reply
        codes.append(reply[0])
    elif code == 354:
        client.send(b"Subject: fuzz\r\n\r\nbody\r\n.\r\n")
        reply = smtp_reply(client)
        assert reply is not None, "closed after DATA"
        codes.append(reply[0])
        code = reply[0]
    if code in (421, 221):
        assert client.closed(), f"server sent {code} but kept the connection open"
        return False
    return True


def run_session(port: int, lines: list[bytes], prologue: list[bytes]) -> list[int]:
    client = LineClient(port)
    codes: list[int] = []
    try:
        greeting = smtp_reply(client)
        assert greeting is not None and greeting[0] == 220, greeting
        for line in prologue + lines:
            if not exchange(client, line, codes):
                return codes
        # Still usable: RFC 5321 §4.1.1.9, NOOP always gets 250.
        client.send(b"NOOP\r\n")
        reply = smtp_reply(client)
        assert reply is not None and reply[0] == 250, (lines, reply)
    finally:
        client.close()
    return codes


@pytest.fixture
def smtp_server(make_server: Any) -> Any:
    srv = make_server(NO_THROTTLE)
    srv.add_domain("example.com")
    srv.add_user(ALICE)
    srv.add_user("bob@example.com")
    return srv


PROLOGUES = {
    "none": [],
    "ehlo": [b"EHLO client.example.org"],
    "mail": [b"EHLO client.example.org", b"MAIL FROM:<x@remote.test>"],
    "rcpt": [b"EHLO client.example.org", b"MAIL FROM:<x@remote.test>", b"RCPT TO:<alice@example.com>"],
}
SUBMISSION_LOGIN = [b"EHLO client.example.org",
                    b"AUTH PLAIN " + base64.b64encode(f"\0{ALICE}\0{PASSWORD}".encode())]


@pytest.mark.parametrize("listener", ["smtp", "submission"])
def test_generated_command_lines(smtp_server: Any, listener: str) -> None:
    port = smtp_server.port(listener)
    with watch_failures() as watch:

        @HYPOTHESIS
        @given(lines=st.lists(command_line(), min_size=1, max_size=6),
               prologue=st.sampled_from(sorted(PROLOGUES)), logged_in=st.booleans())
        def check(lines: list[bytes], prologue: str, logged_in: bool) -> None:
            start = list(PROLOGUES[prologue])
            if listener == "submission" and logged_in:
                start = SUBMISSION_LOGIN + [line for line in start if not line.startswith(b"EHLO")]
            codes = run_session(port, lines, start)
            assert all(200 <= c < 600 for c in codes)

        check()
        watch.check()


def test_many_errors_end_with_421_not_a_crash(smtp_server: Any) -> None:
    """The error budget (Postfix's hard error limit) ends the session with a
    well-formed 421 and a close, never with a dropped connection."""
    with watch_failures() as watch:
        client = LineClient(smtp_server.port("smtp"))
        try:
            assert smtp_reply(client)[0] == 220
            codes = []
            for _ in range(100):
                client.send(b"\x00\xff BOGUS\r\n")
                reply = smtp_reply(client)
                if reply is None:
                    break
                codes.append(reply[0])
                if reply[0] == 421:
                    break
            assert codes[-1] == 421 and all(500 <= c < 600 for c in codes[:-1]), codes
            assert client.closed()
        finally:
            client.close()
        watch.check()


def test_pipelined_garbage_gets_one_reply_per_line(smtp_server: Any) -> None:
    """RFC 2920: replies come in order, one per command, even for junk sent
    in a single write."""
    lines = [b"EHLO x", b"MAIL FROM:<\0>", b"RCPT TO:<a\rb@example.com>", b"\xff\xfe", b"NOOP", b"RSET",
             b"VRFY", b"HELO"]
    client = LineClient(smtp_server.port("smtp"))
    try:
        assert smtp_reply(client)[0] == 220
        client.send(b"".join(line + b"\r\n" for line in lines))
        codes = [smtp_reply(client)[0] for _ in lines]
        assert codes[0] == 250 and codes[4] == 250 and codes[5] == 250
        assert all(c >= 500 for c in codes[1:4]), codes
        client.send(b"NOOP\r\n")
        assert smtp_reply(client)[0] == 250
    finally:
        client.close()
