# -*- test-case-name: tests.message.test_mutf7 -*-
"""The one modified UTF-7 codec (RFC 3501 §5.1.3), for IMAP mailbox names on
the wire and for Maildir++ folder directory names.

`decode` is strict: it raises ValueError for anything `encode` would not
produce (a bad base64 run, a shift that encodes printable ASCII, a missing
"-"), so every name has one spelling and comes back byte for byte in LIST.
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["decode", "encode"]


def _b64_utf16(chunk: str) -> str:
    raw = chunk.encode("utf-16-be")
    return base64.b64encode(raw).decode("ascii").rstrip("=").replace("/", ",")


def encode(text: str) -> str:
    """Modified UTF-7: printable ASCII as itself ("&" as "&-"), every other
    run as "&" + modified base64 of UTF-16BE + "-"."""
    out: list[str] = []
    pending: list[str] = []
    for ch in text:
        if 0x20 <= ord(ch) <= 0x7E:
            if pending:
                out.append("&" + _b64_utf16("".join(pending)) + "-")
                pending = []
            out.append("&-" if ch == "&" else ch)
        else:
            pending.append(ch)
    if pending:
        out.append("&" + _b64_utf16("".join(pending)) + "-")
    return "".join(out)


def decode(text: str) -> str:
    """The Unicode name; ValueError unless text is canonical modified UTF-7."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        amp = text.find("&", i)
        if amp < 0:
            chunk = text[i:]
        else:
            chunk = text[i:amp]
        if any(not 0x20 <= ord(c) <= 0x7E for c in chunk):
            raise ValueError("a modified UTF-7 name holds only printable ASCII")
        out.append(chunk)
        if amp < 0:
            break
        dash = text.find("-", amp + 1)
        if dash < 0:
            raise ValueError("modified UTF-7 shift without its closing '-'")
        body = text[amp + 1:dash]
        if not body:
            out.append("&")
        else:
            raw = body.replace(",", "/")
            try:
                decoded = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
                out.append(decoded.decode("utf-16-be"))
            except (binascii.Error, UnicodeDecodeError) as e:
                raise ValueError("bad modified UTF-7 base64 run") from e
        i = dash + 1
    name = "".join(out)
    if encode(name) != text:
        raise ValueError("mailbox name is not canonical modified UTF-7")
    return name
