# -*- test-case-name: tests.protocols.test_imap_compress -*-
"""COMPRESS=DEFLATE (RFC 4978) against the real server: imaplib wrapped in
zlib (plain, implicit TLS), a raw client through IDLE (the continuation and
the pushed EXISTS must arrive flushed), after STARTTLS, refusals, and a
decompression bomb that must neither blow memory nor kill the session."""

from __future__ import annotations

import imaplib
import resource
import ssl
import zlib
from typing import Any

from tests.conftest import PASSWORD
from tests.protocols.imap_support import Wire, deliver, message

imaplib.Commands.setdefault("COMPRESS", ("AUTH", "SELECTED"))


class DeflateMixin:
    """imaplib with RFC 4978 compression after COMPRESS DEFLATE succeeds."""

    _deflater: Any = None
    _inflater: Any = None
    _plain = b""

    def compress(self) -> str:
        typ, data = self._simple_command("COMPRESS", "DEFLATE")  # type: ignore[attr-defined]
        if typ == "OK":
            self._deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
            self._inflater = zlib.decompressobj(-15)
        return typ

    def send(self, data: bytes) -> None:
        if self._deflater is not None:
            data = self._deflater.compress(data) + self._deflater.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)  # type: ignore[attr-defined]

    def _more(self) -> None:
        chunk = self.sock.recv(65536)  # type: ignore[attr-defined]
        if not chunk:
            raise imaplib.IMAP4.abort("socket closed")
        self._plain += self._inflater.decompress(chunk)

    def read(self, size: int) -> bytes:
        if self._inflater is None:
            return super().read(size)  # type: ignore[misc]
        while len(self._plain) < size:
            self._more()
        data, self._plain = self._plain[:size], self._plain[size:]
        return data

    def readline(self) -> bytes:
        if self._inflater is None:
            return super().readline()  # type: ignore[misc]
        while b"\n" not in self._plain:
            self._more()
        i = self._plain.index(b"\n") + 1
        line, self._plain = self._plain[:i], self._plain[i:]
        return line


class DeflateIMAP4(DeflateMixin, imaplib.IMAP4):
    pass


class DeflateIMAP4_SSL(DeflateMixin, imaplib.IMAP4_SSL):
    pass


class ZWire(Wire):
    """The transcript client, compressing after start_compress()."""

    deflater: Any = None
    inflater: Any = None
    wire_bytes = 0  # compressed bytes received

    def start_compress(self) -> None:
        self.deflater = zlib.compressobj(6, zlib.DEFLATED, -15)
        self.inflater = zlib.decompressobj(-15)

    def send(self, data: bytes) -> None:
        if self.deflater is not None:
            data = self.deflater.compress(data) + self.deflater.flush(zlib.Z_SYNC_FLUSH)
        self.sock.sendall(data)

    def _fill(self) -> None:
        if self.inflater is None:
            return super()._fill()
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        self.wire_bytes += len(chunk)
        self.buf += self.inflater.decompress(chunk)


def _tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _exercise(client: Any, server: Any) -> None:
    big = message("big", body="line of text that repeats\r\n" * 80000)  # ~2 MB
    deliver(server, "alice@example.com", message("small"))
    deliver(server, "alice@example.com", big)
    client.login("alice@example.com", PASSWORD)
    assert client.compress() == "OK"
    typ, data = client.select("INBOX")
    assert (typ, data) == ("OK", [b"2"])
    typ, data = client.fetch("2", "(RFC822)")
    assert typ == "OK" and data[0][1] == big
    typ, data = client.uid("SEARCH", "SUBJECT", "small")
    assert (typ, data) == ("OK", [b"1"])
    typ, data = client.noop()
    assert typ == "OK"
    # A second COMPRESS is refused, and the refusal arrives compressed.
    typ, data = client._simple_command("COMPRESS", "DEFLATE")
    assert typ == "NO" and data[0].startswith(b"[COMPRESSIONACTIVE]")
    assert client.logout()[0] == "BYE"


def test_imaplib_with_deflate(server: Any) -> None:
    _exercise(DeflateIMAP4("127.0.0.1", server.port("imap")), server)


def test_imaplib_with_deflate_over_implicit_tls(server: Any) -> None:
    _exercise(DeflateIMAP4_SSL("127.0.0.1", server.port("imaps"), ssl_context=_tls()), server)


def _compressed_session(server: Any, *, starttls: bool = False) -> ZWire:
    wire = ZWire(server.port("imap"))
    if starttls:
        wire.ok("STARTTLS")
        wire.starttls()
    wire.login()
    assert wire.ok("COMPRESS DEFLATE") == []
    wire.start_compress()
    return wire


def test_idle_through_compression(server: Any) -> None:
    deliver(server, "alice@example.com", message("first"))
    with _compressed_session(server) as wire:
        assert b"* 1 EXISTS" in wire.ok("SELECT INBOX")
        tag = wire.tag()
        wire.send(tag + b" IDLE\r\n")
        assert wire.line() == b"+ idling"  # flushed on its own, before anything else happens
        deliver(server, "alice@example.com", message("pushed"))
        assert wire.line() == b"* 2 EXISTS"
        assert wire.line() == b"* 2 RECENT"
        wire.send(b"DONE\r\n")
        status, lines = wire.until(tag)
        assert status == b"OK IDLE terminated" and lines == []
        assert wire.wire_bytes > 0
        wire.ok("NOOP")


def test_second_compress_and_unknown_mechanism(server: Any) -> None:
    with Wire(server.port("imap")) as plain:
        plain.login()
        tagged, _ = plain.transact("COMPRESS LZMA")
        assert tagged.startswith(b"BAD")
        plain.ok("NOOP")
    with _compressed_session(server) as wire:
        tagged, _ = wire.transact("COMPRESS DEFLATE")
        assert tagged.startswith(b"NO [COMPRESSIONACTIVE]")
        wire.ok("NOOP")


def test_compress_needs_login(server: Any) -> None:
    with Wire(server.port("imap")) as wire:
        tagged, _ = wire.transact("COMPRESS DEFLATE")
        assert tagged.startswith(b"BAD")


def test_compress_after_starttls(server: Any) -> None:
    deliver(server, "alice@example.com", message("tls"))
    with _compressed_session(server, starttls=True) as wire:
        assert b"* 1 EXISTS" in wire.ok("SELECT INBOX")
        [line] = wire.ok("FETCH 1 (BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        assert b"Subject: tls" in line


def test_decompression_bomb_is_bounded(server: Any) -> None:
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB; the server runs in-process
    with _compressed_session(server) as wire:
        # 256 MiB of one byte, ~250 kB compressed, with no line end until the end.
        deflater = wire.deflater
        chunk = b"a" * (1 << 20)
        for _ in range(256):
            wire.sock.sendall(deflater.compress(chunk))
        wire.sock.sendall(deflater.compress(b"\r\n") + deflater.flush(zlib.Z_SYNC_FLUSH))
        status, _ = wire.until(b"*")  # the untagged BAD for the monster line
        assert status.startswith(b"BAD"), status
        wire.ok("NOOP")  # the session survives
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 64, grown_mib
