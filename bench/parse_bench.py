"""Throughput of xmail.message.parse_message on typical messages.

    python bench/parse_bench.py [seconds-per-case]

Prints messages/s and µs/message for: a 10 kB plain-text message, a 10 kB
multipart/alternative (quoted-printable text + HTML), a message with a
1 MB base64 attachment, and a 300 kB text body (digest bounded).
"""

from __future__ import annotations

import base64
import os
import sys
import time

from xmail.message import parse_message

HEADER = (
    b"Return-Path: <alice@example.org>\r\n"
    b"Received: from mx.example.org (mx.example.org [192.0.2.1])\r\n"
    b"\tby mail.example.com with ESMTPS id 4Xyz; Tue, 3 Nov 2026 10:00:00 +0000\r\n"
    b"From: =?utf-8?q?Alice_M=C3=BCller?= <alice@example.org>\r\n"
    b"To: Bob <bob@example.com>, carol@example.com\r\n"
    b"Cc: \"Dave, the boss\" <dave@example.com>\r\n"
    b"Subject: =?utf-8?b?UXVhcnRlcmx5IHJlcG9ydCDigJQgZHJhZnQ=?=\r\n"
    b"Date: Tue, 3 Nov 2026 10:00:00 +0100\r\n"
    b"Message-ID: <20261103100000.4711@example.org>\r\n"
    b"MIME-Version: 1.0\r\n"
)

LINE = b"The quick brown fox jumps over the lazy dog, again and again and again.\r\n"


def plain_10k() -> bytes:
    body = LINE * (10000 // len(LINE))
    return HEADER + b"Content-Type: text/plain; charset=utf-8\r\n\r\n" + body


def alternative_10k() -> bytes:
    text = LINE.replace(b"fox", b"f=C3=B6x") * 60
    html_body = b"<html><body><p>" + LINE * 60 + b"</p></body></html>\r\n"
    return (HEADER + b'Content-Type: multipart/alternative; boundary="b1"\r\n\r\n'
            b"--b1\r\nContent-Type: text/plain; charset=utf-8\r\n"
            b"Content-Transfer-Encoding: quoted-printable\r\n\r\n" + text +
            b"--b1\r\nContent-Type: text/html; charset=utf-8\r\n\r\n" + html_body +
            b"--b1--\r\n")


def attachment_1m() -> bytes:
    blob = base64.encodebytes(os.urandom(750_000)).replace(b"\n", b"\r\n")
    return (HEADER + b'Content-Type: multipart/mixed; boundary="b2"\r\n\r\n'
            b"--b2\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n"
            b"--b2\r\nContent-Type: application/pdf; name=\"r.pdf\"\r\n"
            b"Content-Disposition: attachment; filename*=utf-8''r%C3%A9sum%C3%A9.pdf\r\n"
            b"Content-Transfer-Encoding: base64\r\n\r\n" + blob + b"--b2--\r\n")


def text_300k() -> bytes:
    return HEADER + b"\r\n" + LINE * (300_000 // len(LINE))


def run(name: str, message: bytes, seconds: float) -> None:
    count = 0
    start = time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            parse_message(message)
        count += 20
        now = time.perf_counter()
        if now >= deadline:
            break
    elapsed = now - start
    print(f"{name:28s} {len(message):>9,d} B  {count / elapsed:>10,.0f} msgs/s"
          f"  {elapsed / count * 1e6:>9,.1f} µs/msg")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    run("plain 10 kB", plain_10k(), seconds)
    run("alternative QP+HTML 10 kB", alternative_10k(), seconds)
    run("1 MB base64 attachment", attachment_1m(), seconds)
    run("300 kB text (digest cut)", text_300k(), seconds)


if __name__ == "__main__":
    main()
