# -*- test-case-name: tests.protocols.test_imap_literals -*-
"""APPEND literals of every size up to the limit reach the store, over a real
socket: synchronising ``{n}`` and non-synchronising ``{n+}`` (RFC 7888),
plain, implicit TLS and COMPRESS=DEFLATE (RFC 4978) (issue 15: a literal
between the read-pause bound and the spool threshold used to hang)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.protocols.imap_support import Wire
from tests.protocols.test_imap_compress import ZWire

KiB = 1024
MiB = 1024 * KiB
SIZES = [255 * KiB, 256 * KiB, 256 * KiB + 1, 300_000, MiB - 1, MiB, MiB + 1, int(1.1 * MiB)]


def sized_message(size: int) -> bytes:
    """A message of exactly `size` bytes, CRLF lines."""
    head = b"From: bob@example.com\r\nTo: alice@example.com\r\nSubject: size %d\r\n\r\n" % size
    line = b"x" * 76 + b"\r\n"
    body = line * ((size - len(head)) // len(line))
    rest = size - len(head) - len(body)
    tail = (b"y" * (rest - 2) + b"\r\n") if rest >= 2 else b"z" * rest
    data = head + body + tail
    assert len(data) == size
    return data


def append(w: Wire, data: bytes, *, synchronising: bool) -> bytes:
    """APPEND data; the tagged status line."""
    tag = w.tag()
    if synchronising:
        w.send(tag + b" APPEND INBOX {%d}\r\n" % len(data))
        cont = w.line()
        assert cont.startswith(b"+"), cont
        w.send(data + b"\r\n")
    else:
        w.send(tag + b" APPEND INBOX {%d+}\r\n" % len(data) + data + b"\r\n")
    status, _ = w.until(tag)
    return status


def _connect(server: Any, mode: str) -> Wire:
    tls = mode.endswith("tls")
    w = ZWire(server.port("imaps" if tls else "imap"), tls=tls, timeout=30)
    w.login()
    if mode.startswith("compress"):
        w.ok("COMPRESS DEFLATE")
        w.start_compress()
    return w


@pytest.mark.parametrize("synchronising", [True, False], ids=["sync", "nonsync"])
@pytest.mark.parametrize("mode", ["plain", "tls", "compress", "compress-tls"])
def test_append_every_size_boundary(server: Any, mode: str, synchronising: bool) -> None:
    with _connect(server, mode) as w:
        for size in SIZES:
            data = sized_message(size)
            status = append(w, data, synchronising=synchronising)
            assert status.startswith(b"OK"), (size, status)
        w.ok("SELECT INBOX")
        for n, size in enumerate(SIZES, 1):
            lines = w.ok(f"FETCH {n} BODY.PEEK[]")
            assert lines[0].endswith(sized_message(size) + b")"), size
        w.ok("NOOP")  # the connection is still in step
