# -*- test-case-name: tests.protocols.test_smtp_spool -*-
"""MessageSpool: line endings, bounded memory, size limit, header hook."""

from __future__ import annotations

import os
from typing import Any

import pytest

from xmail.protocols.smtp.spool import MessageSpool, normalize_line_endings


@pytest.mark.parametrize("raw, clean", [
    (b"a\r\nb\r\n", b"a\r\nb\r\n"),
    (b"a\nb\n", b"a\r\nb\r\n"),
    (b"a\rb\r\n", b"a\r\nb\r\n"),
    (b"\n.\n", b"\r\n.\r\n"),
])
def test_normalize(raw: bytes, clean: bytes) -> None:
    assert normalize_line_endings(raw) == clean


def feed(spool: MessageSpool, data: bytes, step: int) -> None:
    for i in range(0, len(data), step):
        spool.write(data[i : i + step])
    spool.finish()


@pytest.mark.parametrize("step", [1, 3, 1000])
def test_cr_split_across_writes(tmp_path: Any, step: int) -> None:
    spool = MessageSpool(str(tmp_path), "a", max_size=10**6)
    feed(spool, b"H: v\r\n\r\nx\ry\r\nz\n", step)
    assert spool.source() == b"H: v\r\n\r\nx\r\ny\r\nz\r\n"
    assert spool.size == len(spool.source())


def test_spills_to_file_and_discards(tmp_path: Any) -> None:
    spool = MessageSpool(str(tmp_path), "b", max_size=10**7, prefix=b"P: 1\r\n", memory_limit=1000)
    body = b"H: v\r\n\r\n" + b"y" * 70 + b"\r\n"
    feed(spool, body * 100, 4096)
    path = spool.source()
    assert isinstance(path, str) and os.path.exists(path)
    with open(path, "rb") as f:
        assert f.read() == b"P: 1\r\n" + body * 100
    spool.discard()
    assert not os.path.exists(path)


def test_too_big_keeps_nothing(tmp_path: Any) -> None:
    spool = MessageSpool(str(tmp_path), "c", max_size=100, memory_limit=50)
    feed(spool, b"x" * 80 + b"\r\n" + b"y" * 80, 10)
    assert spool.too_big
    assert os.listdir(tmp_path) == []


def test_header_hook_sees_header_section_once(tmp_path: Any) -> None:
    seen: list[bytes] = []

    def hook(section: bytes) -> bytes:
        seen.append(section)
        return section[:-2] + b"Added: 1\r\n\r\n"

    spool = MessageSpool(str(tmp_path), "d", max_size=10**6, on_headers=hook)
    feed(spool, b"A: 1\r\nB: 2\r\n\r\nbody\r\n", 1)
    assert seen == [b"A: 1\r\nB: 2\r\n\r\n"]
    assert spool.source() == b"A: 1\r\nB: 2\r\nAdded: 1\r\n\r\nbody\r\n"


def test_header_only_message_and_overflow(tmp_path: Any) -> None:
    seen: list[bytes] = []
    spool = MessageSpool(str(tmp_path), "e", max_size=10**6, on_headers=lambda s: seen.append(s) or s)
    feed(spool, b"A: 1\r\n", 100)
    assert seen == [b"A: 1\r\n"]
    spool = MessageSpool(str(tmp_path), "f", max_size=10**6, header_limit=100,
                         on_headers=lambda s: seen.append(s) or s)
    feed(spool, b"X: " + b"y" * 200 + b"\r\n\r\nbody\r\n", 7)
    assert spool.header_overflow and len(seen) == 1
