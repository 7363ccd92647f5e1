"""Transcript tests for the IMAP extensions of issue 15 against a real
server: BINARY (RFC 3516), MULTIAPPEND (RFC 3502), SEARCHRES (RFC 5182),
MULTISEARCH (RFC 7377), PARTIAL and CONTEXT (RFC 9394, RFC 5267), CATENATE
(RFC 4469)."""

from __future__ import annotations

import base64

import pytest

from tests.protocols.imap_support import Wire, deliver


@pytest.fixture
def alice(server):  # type: ignore[no-untyped-def]
    with Wire(server.port("imap")) as w:
        w.login()
        yield w


PAYLOAD = bytes(range(256)) * 4  # NUL and every other octet


def _multipart(payload: bytes = PAYLOAD) -> bytes:
    b64 = base64.encodebytes(payload).replace(b"\n", b"\r\n")
    return (b"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: binary\r\n"
            b"MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=XX\r\n\r\n"
            b"--XX\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n"
            b"caf=C3=A9 au lait\r\n"
            b"--XX\r\nContent-Type: application/octet-stream\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b64 +
            b"--XX\r\nContent-Type: application/x-odd\r\nContent-Transfer-Encoding: x-uuencode\r\n\r\n"
            b"begin 644 x\r\nend\r\n"
            b"--XX--\r\n")


# --- BINARY (RFC 3516) ---------------------------------------------------------------------------


def test_binary_capability(alice: Wire) -> None:
    [caps] = alice.ok("CAPABILITY")
    assert b"BINARY" in caps.split()


def test_fetch_binary_decodes_base64_with_literal8(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", _multipart())
    alice.ok("SELECT INBOX")
    [line] = alice.ok("FETCH 1 (BINARY.PEEK[2])")
    # RFC 3516 §4.2: data with NUL goes out as literal8 ~{n}
    assert line.startswith(b"* 1 FETCH (BINARY[2] ~{%d}\r\n" % len(PAYLOAD)), line[:60]
    assert line.endswith(PAYLOAD + b")")
    [line] = alice.ok("FETCH 1 (BINARY.SIZE[2] BINARY.SIZE[1] FLAGS)")
    assert line == b"* 1 FETCH (BINARY.SIZE[2] %d BINARY.SIZE[1] 13 FLAGS (\\Recent))" % len(PAYLOAD)


def test_fetch_binary_quoted_printable_partial_and_seen(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", _multipart())
    alice.ok("SELECT INBOX")
    [line] = alice.ok("FETCH 1 (BINARY[1]<2.5>)")
    assert line.startswith(b"* 1 FETCH (BINARY[1]<2> {5}\r\nf\xc3\xa9 a")
    assert b"\\Seen" in line  # BINARY (not PEEK) sets \Seen like BODY[]
    [line] = alice.ok("FETCH 1 BINARY.PEEK[1]")
    assert line == b"* 1 FETCH (BINARY[1] {13}\r\ncaf\xc3\xa9 au lait)"
    # No such part: NIL (RFC 3516 §4.2 as BODY[] in RFC 3501 §6.4.5)
    [line] = alice.ok("FETCH 1 BINARY.PEEK[9]")
    assert line == b"* 1 FETCH (BINARY[9] NIL)"


def test_fetch_binary_unknown_cte(server, alice: Wire) -> None:  # type: ignore[no-untyped-def]
    deliver(server, "alice@example.com", _multipart())
    alice.ok("SELECT INBOX")
    tagged, _ = alice.expect("NO", "FETCH 1 (BINARY.PEEK[3])")
    assert tagged.startswith(b"NO [UNKNOWN-CTE]")
    alice.expect("BAD", "FETCH 1 (BINARY[1.HEADER])")  # section-binary is part numbers only
    alice.expect("BAD", "FETCH 1 (BINARY.SIZE[1]<0.2>)")
    alice.ok("NOOP")  # the connection stays usable


def test_append_literal8(alice: Wire) -> None:
    body = b"Subject: nul\r\n\r\nbefore\0after\r\n"
    tag = alice.tag()
    alice.send(tag + b" APPEND INBOX ~{%d}\r\n" % len(body))
    assert alice.line().startswith(b"+ ")
    alice.send(body + b"\r\n")
    status, _ = alice.until(tag)
    assert status.startswith(b"OK [APPENDUID"), status
    tagged, _ = alice.transact(b"APPEND INBOX (\\Seen) ~{%d+}\r\n" % len(body) + body)
    assert tagged.startswith(b"OK [APPENDUID"), tagged
    alice.ok("SELECT INBOX")
    [line] = alice.ok("FETCH 2 (FLAGS BINARY.PEEK[])")
    assert line == b"* 2 FETCH (FLAGS (\\Seen \\Recent) BINARY[] ~{%d}\r\n%s)" % (len(body), body)
