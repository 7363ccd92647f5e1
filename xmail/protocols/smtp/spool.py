# -*- test-case-name: tests.protocols.test_smtp_spool -*-
"""Where a message being received goes: memory while small, a tmp file after.

Bounded everywhere: at most `memory_limit` bytes of content and
`header_limit` bytes of header section are held in memory; the rest streams
to a file under data_dir/tmp.  Bare CR and bare LF become CRLF on the way in
(the store invariant, and SMTP smuggling safety for anything we relay
later).  Writes to the tmp file are plain buffered writes (page cache, no
fsync) on the reactor thread; the store makes its own durable copy.
"""

from __future__ import annotations

import io
import os
import shutil
from collections.abc import Callable
from typing import Any

from twisted.internet.threads import deferToThread

MEMORY_LIMIT = 256 * 1024
HEADER_LIMIT = 1024 * 1024
_COPY_CHUNK = 1 << 20


def normalize_line_endings(data: bytes) -> bytes:
    """Every bare CR or LF becomes CRLF (one complete piece of content)."""
    n = data.count(b"\n")
    crlf = data.count(b"\r\n")
    if n == crlf and data.count(b"\r") == crlf:
        return data
    return data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")


class MessageSpool:
    """One message in transit.

    `on_headers(header_section) -> header_section` is called once, with the
    header section up to and including the empty line (or all of a message
    without body), and may return it changed (added Message-ID/Date).  It is
    not called when the header section exceeds `header_limit`
    (`header_overflow` is then set and the content passes through as is).
    """

    def __init__(self, tmp_dir: str, name: str, *, max_size: int, prefix: bytes = b"",
                 on_headers: Callable[[bytes], bytes] | None = None,
                 memory_limit: int = MEMORY_LIMIT, header_limit: int = HEADER_LIMIT):
        self.tmp_dir = tmp_dir
        self.name = name
        self.max_size = max_size
        self.prefix = prefix
        self.size = 0  # content octets received, CRLF normalised
        self.too_big = False
        self.header_overflow = False
        self.headers: bytes | None = None  # the header section once complete
        self._on_headers = on_headers
        self._memory_limit = memory_limit
        self._header_limit = header_limit
        self._header_buf = b""
        self._headers_done = False
        self._cr_pending = False
        self._chunks: list[bytes] = [prefix] if prefix else []
        self._held = len(prefix)
        self._file: io.BufferedWriter | None = None
        self.path: str | None = None
        self._finished = False

    # -- input ---------------------------------------------------------------
    def write(self, data: bytes) -> None:
        if self._finished:
            raise RuntimeError("spool already finished")
        if self._cr_pending:
            data = b"\r" + data
            self._cr_pending = False
        if data.endswith(b"\r"):
            # Its LF may be in the next piece: decide then.
            data = data[:-1]
            self._cr_pending = True
        if not data:
            return
        data = normalize_line_endings(data)
        self.size += len(data)
        if self.too_big:
            return
        if self.size > self.max_size:
            # RFC 1870 §6.3: keep reading, answer 552 at the end.
            self.too_big = True
            self._drop_content()
            return
        if not self._headers_done:
            data = self._collect_headers(data)
            if not data:
                return
        self._store(data)

    def finish(self) -> None:
        """The client sent the end of the message."""
        if self._cr_pending:
            self._cr_pending = False
            self.write(b"\r\n")
        if not self._headers_done and not self.too_big:
            rest = self._complete_headers(self._header_buf)
            self._header_buf = b""
            self._store(rest)
        self._finished = True
        if self._file is not None:
            self._file.close()
            self._file = None

    def _collect_headers(self, data: bytes) -> bytes:
        buf = self._header_buf + data
        if buf.startswith(b"\r\n"):
            end = 2  # no header fields at all
        else:
            end = buf.find(b"\r\n\r\n")
            end = end + 4 if end >= 0 else -1
        if end < 0:
            if len(buf) > self._header_limit:
                self.header_overflow = True
                self._headers_done = True
                self._header_buf = b""
                return buf
            self._header_buf = buf
            return b""
        self._header_buf = b""
        return self._complete_headers(buf[:end]) + buf[end:]

    def _complete_headers(self, section: bytes) -> bytes:
        self._headers_done = True
        if self._on_headers is not None:
            section = self._on_headers(section)
        self.headers = section
        return section

    def _store(self, data: bytes) -> None:
        if not data:
            return
        if self._file is None:
            self._chunks.append(data)
            self._held += len(data)
            if self._held > self._memory_limit:
                self._spill()
        else:
            self._file.write(data)

    def _spill(self) -> None:
        os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
        self.path = os.path.join(self.tmp_dir, f"smtp-{self.name}")
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self._file = open(fd, "wb", buffering=_COPY_CHUNK)  # noqa: SIM115 - closed in finish/discard
        self._file.writelines(self._chunks)
        self._chunks = []
        self._held = 0

    def _drop_content(self) -> None:
        self._chunks = []
        self._header_buf = b""
        self._headers_done = True
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.path is not None:
            _unlink(self.path)
            self.path = None

    # -- output --------------------------------------------------------------
    def source(self) -> bytes | str:
        """The finished message: bytes while small, else the tmp file's path."""
        if not self._finished:
            raise RuntimeError("spool not finished")
        if self.path is not None:
            return self.path
        return b"".join(self._chunks)

    def to_file(self) -> str:
        """A path holding the message (writes the tmp file if still in memory)."""
        if self.path is None:
            os.makedirs(self.tmp_dir, mode=0o700, exist_ok=True)
            self.path = os.path.join(self.tmp_dir, f"smtp-{self.name}")
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.writelines(self._chunks)
            self._chunks = []
        return self.path

    def with_prefix(self, prefix: bytes, suffix: str) -> Any:
        """-> Deferred[bytes | str]: the message with `prefix` in front; a new
        tmp file (copied in a thread) when the message is on disk.  The
        caller removes a returned path with `discard_copy`."""
        from twisted.internet import defer

        source = self.source()
        if isinstance(source, bytes):
            return defer.succeed(prefix + source)
        return deferToThread(copy_with_prefix, prefix, source, f"{source}.{suffix}")

    def discard(self) -> None:
        """Remove the tmp file, if any."""
        if self._file is not None:
            self._file.close()
            self._file = None
        if self.path is not None:
            _unlink(self.path)
            self.path = None
        self._chunks = []


def copy_with_prefix(prefix: bytes, source: str, dest: str) -> str:
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with open(fd, "wb") as out, open(source, "rb") as src:
        out.write(prefix)
        shutil.copyfileobj(src, out, _COPY_CHUNK)
    return dest


def discard_copy(source: bytes | str) -> None:
    if isinstance(source, str):
        _unlink(source)


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
