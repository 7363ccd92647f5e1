# -*- test-case-name: tests.proof.test_injection -*-
"""CRLF injection: client-controlled arguments never become a header or a
log line of their own.

Against a real `twistd -n xmail` subprocess, every argument a client
controls is loaded with line breaks wherever the protocol can carry them:
a bare CR inside a command line (SMTP HELO/EHLO, MAIL, RCPT, POP3 USER), CR
and LF encoded in ESMTP xtext parameters (ENVID, ORCPT, AUTH=, RFC 3461
§4 / RFC 4954 §5), inside base64 SASL user names (SMTP AUTH PLAIN/LOGIN,
POP3 AUTH PLAIN, IMAP AUTHENTICATE-less LOGIN via literals), and inside
IMAP literals (LOGIN name, ID parameters), plus the Unicode line breaks
NEL, LS and PS.  The forged text is always `X-Injected: yes` / a forged
JSON record.  Then:

- every message stored for the target user has a clean header section:
  CRLF line endings only, every line a `Name: value` field or a folded
  continuation, and no `X-Injected` field (Received and Return-Path carry
  the client's text only escaped or replaced);
- every line of data_dir/log/*.log parses as one JSON object, contains no
  raw CR, LF, NEL, LS or PS (bug P6, fixed), and no
  record was forged (no record has account "forged@example.com");
- `xmailctl log logins` shows one record per login.log line;
- no line of the twistd log starts with the forged text.
"""

from __future__ import annotations

import base64
import email.parser
import email.policy
import glob
import json
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.conftest import PASSWORD
from tests.proof.support import NO_THROTTLE, Daemon, LineClient, pop3_status, smtp_reply

pytestmark = pytest.mark.timeout(180)

ALICE = "alice@example.com"
FORGED_HEADER = "X-Injected: yes"
FORGED_RECORD = '{"ts":1,"event":"login","account":"forged@example.com","result":"ok"}'
BREAKS = ["\r\n", "\r", "\n", "\u0085", "\u2028", "\u2029"]
WIRE_BREAKS = [b"\r"]  # inside a command line only a bare CR can travel (LF ends the line)


def xtext(text: str) -> bytes:
    """RFC 3461 §4 xtext: "+" HEX for anything outside "!".."~" and "+", "=" ."""
    out = b""
    for byte in text.encode("utf-8"):
        out += bytes([byte]) if 0x21 <= byte <= 0x7E and byte not in b"+=" else b"+%02X" % byte
    return out


def payloads(prefix: str) -> list[str]:
    return [prefix + brk + forged for brk in BREAKS for forged in (FORGED_HEADER, FORGED_RECORD)]


def token_message(token: str, sender: str = "s@remote.test") -> bytes:
    return (f"From: {sender}\r\nTo: {ALICE}\r\nSubject: {token}\r\nMessage-ID: <{token}@remote.test>\r\n"
            f"\r\nbody of {token}\r\n").encode()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: Any) -> Iterator[Daemon]:
    workdir = str(tmp_path_factory.mktemp("inject"))
    daemon = Daemon(workdir, listeners=("smtp", "submission", "pop3", "imap"), extra=NO_THROTTLE)
    daemon.ctl("domain", "add", "example.com")
    daemon.ctl("user", "add", ALICE, "--password-stdin", stdin=PASSWORD + "\n")
    daemon.start()
    yield daemon
    daemon.stop()


class SMTP:
    def __init__(self, port: int):
        self.c = LineClient(port)
        assert smtp_reply(self.c)[0] == 220

    def cmd(self, line: bytes) -> int:
        self.c.send(line + b"\r\n")
        reply = smtp_reply(self.c)
        assert reply is not None, f"closed after {line!r}"
        return reply[0]

    def try_or(self, line: bytes, fallback: bytes, ok: int = 250) -> None:
        """The injected command, or when it is refused the clean one."""
        if self.cmd(line) != ok:
            code = self.cmd(fallback)
            assert code == ok, (line, fallback, code)

    def close(self) -> None:
        self.c.close()


def smtp_injections(daemon: Daemon) -> list[str]:
    """Deliver messages to alice with injected envelope arguments; returns tokens
    of the messages that were accepted."""
    tokens = []
    for n, bad in enumerate(WIRE_BREAKS * 2 + [b"\xc2\x85", b"\xe2\x80\xa8"]):
        forged = FORGED_HEADER.encode()
        s = SMTP(daemon.ports["smtp"])
        try:
            hello = b"EHLO evil" + bad + forged
            s.try_or(hello if n % 2 == 0 else hello.replace(b"EHLO", b"HELO"), b"EHLO clean.example")
            s.cmd(b"RSET")
            s.try_or(b"MAIL FROM:<s" + bad + forged.replace(b" ", b"") + b"@remote.test>",
                     b"MAIL FROM:<s@remote.test>")
            s.cmd(b"RSET")
            s.try_or(b"MAIL FROM:<s@remote.test> ENVID=" + xtext(f"id\r\n{FORGED_HEADER}") + b" RET=HDRS",
                     b"MAIL FROM:<s@remote.test>")
            s.try_or(b"RCPT TO:<alice@example.com> NOTIFY=FAILURE ORCPT=rfc822;" +
                     xtext(f"alice@example.com\r\n{FORGED_HEADER}"), b"RCPT TO:<alice@example.com>")
            assert s.cmd(b"DATA") == 354
            token = f"smtp-{n}"
            s.c.send(token_message(token) + b".\r\n")
            assert smtp_reply(s.c)[0] == 250
            tokens.append(token)
        finally:
            s.close()
    return tokens


def submission_injections(daemon: Daemon) -> list[str]:
    tokens = []
    for n, name in enumerate(payloads("alice@example.com")):
        s = SMTP(daemon.ports["submission"])
        try:
            assert s.cmd(b"EHLO client.example") == 250
            plain = base64.b64encode(b"\0" + name.encode() + b"\0" + PASSWORD.encode())
            assert s.cmd(b"AUTH PLAIN " + plain) == 535
            assert s.cmd(b"AUTH LOGIN " + base64.b64encode(name.encode())) == 334
            assert s.cmd(base64.b64encode(b"wrong")) == 535
            # authzid != authcid with line breaks too
            plain = base64.b64encode(name.encode() + b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())
            assert s.cmd(b"AUTH PLAIN " + plain) in (535, 501, 554)
            if n % 4 == 0:
                plain = base64.b64encode(b"\0" + ALICE.encode() + b"\0" + PASSWORD.encode())
                assert s.cmd(b"AUTH PLAIN " + plain) == 235
                s.try_or(b"MAIL FROM:<alice@example.com> AUTH=" + xtext(name),
                         b"MAIL FROM:<alice@example.com>")
                assert s.cmd(b"RCPT TO:<alice@example.com>") == 250
                assert s.cmd(b"DATA") == 354
                token = f"sub-{n}"
                s.c.send(token_message(token, ALICE) + b".\r\n")
                assert smtp_reply(s.c)[0] == 250
                tokens.append(token)
        finally:
            s.close()
    return tokens


def pop3_injections(daemon: Daemon) -> None:
    for name in payloads("alice@example.com"):
        c = LineClient(daemon.ports["pop3"])
        try:
            assert pop3_status(c).startswith(b"+OK")
            wire = name.encode().replace(b"\n", b"").replace(b"\r", b"\r")
            c.send(b"USER " + wire + b"\r\n")
            if pop3_status(c).startswith(b"+OK"):
                c.send(b"PASS wrong\r\n")
                pop3_status(c)
            c.send(b"AUTH PLAIN " + base64.b64encode(b"\0" + name.encode() + b"\0wrong") + b"\r\n")
            status = pop3_status(c)
            assert status is None or status.startswith(b"-ERR"), status
        finally:
            c.close()


def literal(data: bytes) -> bytes:
    return b"{%d+}\r\n" % len(data) + data


def imap_injections(daemon: Daemon) -> None:
    for n, name in enumerate(payloads("alice@example.com")):
        c = LineClient(daemon.ports["imap"])
        try:
            assert c.line().startswith(b"* OK")
            value = name.encode()
            c.send(b"i ID (" + literal(b"name") + b" " + literal(value) + b" \"version\" " + literal(value)
                   + b")\r\n")
            while not (line := c.line()).startswith(b"i "):
                assert line
            c.send(b"l LOGIN " + literal(value) + b" " + literal(b"wrong") + b"\r\n")
            while not (line := c.line()).startswith(b"l "):
                assert line
            assert line.startswith(b"l NO"), line
            if n % 4 == 0:
                c.send(b"k LOGIN " + ALICE.encode() + b' "' + PASSWORD.encode() + b'"\r\n')
                while not (line := c.line()).startswith(b"k "):
                    assert line
                assert line.startswith(b"k OK"), line
                c.send(b"a APPEND INBOX " + literal(token_message(f"imap-{n}")) + b"\r\n")
                while not (line := c.line()).startswith(b"a "):
                    assert line
        finally:
            c.close()


FIELD = re.compile(rb"^[\x21-\x39\x3b-\x7e]+:")


def check_stored_headers(daemon: Daemon, tokens: list[str]) -> None:
    root = os.path.join(daemon.data_dir, "mail", "example.com", "alice")
    files = [p for sub in ("cur", "new") for p in glob.glob(os.path.join(root, sub, "*"))]
    seen = set()
    for path in files:
        with open(path, "rb") as f:
            data = f.read()
        head = data.split(b"\r\n\r\n", 1)[0]
        assert b"\r" not in head.replace(b"\r\n", b"") and b"\n" not in head.replace(b"\r\n", b""), (
            f"bare CR or LF in the header section of {path}")
        for line in head.split(b"\r\n"):
            assert FIELD.match(line) or line[:1] in (b" ", b"\t"), f"not a header field line: {line!r}"
        message = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(data, headersonly=True)
        names = [k.lower() for k in message.keys()]
        assert "x-injected" not in names, (path, head)
        for unicode_break in ("\u0085", "\u2028", "\u2029"):
            assert unicode_break.encode() not in head or b"X-Injected" not in head.split(
                unicode_break.encode(), 1)[1][:20], (path, head)
        seen.add(message["Subject"])
    assert set(tokens) <= seen, (tokens, seen)


def check_logs(daemon: Daemon) -> int:
    paths = sorted(set(glob.glob(os.path.join(daemon.data_dir, "log", "*.log*"))))
    assert paths, "no audit logs written"
    total = 0
    login_lines = 0
    for path in paths:
        if os.path.islink(path):
            continue
        with open(path, "rb") as f:
            raw = f.read()
        assert raw.endswith(b"\n"), path
        for line in raw[:-1].split(b"\n"):
            assert b"\r" not in line, (path, line)
            text = line.decode("utf-8")
            for brk in ("\u0085", "\u2028", "\u2029"):
                assert brk not in text, f"raw {brk!r} in {path}: {text[:200]!r}"
            record = json.loads(text)
            assert isinstance(record, dict), (path, text)
            assert record.get("account") != "forged@example.com", (path, text)
            total += 1
        if os.path.basename(path).startswith("login"):
            login_lines += raw.count(b"\n")
    return login_lines


def test_crlf_injection_reaches_no_header_and_no_log_line(daemon: Daemon) -> None:
    tokens = smtp_injections(daemon) + submission_injections(daemon)
    pop3_injections(daemon)
    imap_injections(daemon)
    assert len(tokens) >= 4
    check_stored_headers(daemon, tokens)
    login_lines = check_logs(daemon)
    assert login_lines >= len(payloads("x")) * 3  # every failed login was logged
    # The admin tool shows one record per line, the forged text inside a field.
    shown = daemon.ctl("log", "logins").stdout
    assert len(shown.splitlines()) == login_lines, shown[-2000:]
    assert not any(line.startswith(("X-Injected", '{"ts":1')) for line in shown.splitlines())
    twistd_lines = daemon.log_text().splitlines()
    assert not [line for line in twistd_lines if line.startswith(("X-Injected", '{"ts":1'))]
    assert not daemon.tracebacks(), daemon.log_text()[-5000:]


def test_unicode_line_breaks_are_escaped_in_logs(daemon: Daemon) -> None:
    """str.splitlines(), many log shippers and pre-ES2019 JavaScript treat
    NEL, LS and PS as line ends: a client-chosen login name must not
    carry them raw into a log line."""
    s = SMTP(daemon.ports["submission"])
    try:
        assert s.cmd(b"EHLO client.example") == 250
        for brk in ("\u0085", "\u2028", "\u2029"):
            name = f"alice@example.com{brk}{FORGED_RECORD}"
            plain = base64.b64encode(b"\0" + name.encode() + b"\0wrong")
            assert s.cmd(b"AUTH PLAIN " + plain) == 535
    finally:
        s.close()
    check_logs(daemon)
