# -*- test-case-name: tests.protocols.test_imap_extensions -*-
"""BINARY (RFC 3516): a body part with its content-transfer-encoding undone.

Pure functions over the structure cached at delivery (fetch.py's layout) and
the bytes of the message file; no Twisted, no sockets.

    part_range(structure, parts) -> (start, end, encoding) | None
    decode(data, encoding) -> bytes             # raises UnknownCTE
    render_binary(name, data) -> bytes          # "BINARY[1] ~{n}\\r\\n..." or "{n}"

RFC 3516 §4.2: `BINARY[]` is the whole message as stored (nothing to
decode); `BINARY[n.m]` is that part's body, decoded.  A multipart or
message/rfc822 part is sent as it is (its encoding can only be 7bit, 8bit
or binary, RFC 2045 §6.4).  An encoding we cannot undo answers the command
`NO [UNKNOWN-CTE]` (§4.3).
"""

from __future__ import annotations

import binascii
from typing import Any

_IDENTITY = frozenset({"", "7bit", "8bit", "binary"})


class UnknownCTE(Exception):
    """RFC 3516 §4.3: the part's content-transfer-encoding is not known."""


def part_range(structure: dict[str, Any], parts: tuple[int, ...]) -> tuple[int, int, str] | None:
    """Byte range [start, end) of the body of part `parts` and its encoding
    (lower-case); the whole message for no part.  None: no such part.
    Part numbering as RFC 3501 §6.4.5 (and fetch.resolve_section)."""
    body = structure["body"]
    if not parts:
        return body["hs"], body["be"], ""
    node = body
    at_message = True
    for number in parts:
        if not at_message:
            if node.get("type") == "message" and node.get("subtype") == "rfc822" and "msg" in node:
                node = node["msg"]["body"]
                at_message = True
            elif not node.get("parts"):
                return None
        children = node.get("parts")
        if children:
            if not 1 <= number <= len(children):
                return None
            node = children[number - 1]
        elif number != 1:
            return None
        at_message = False
    encoding = "" if node.get("parts") or "msg" in node else str(node.get("enc") or "").lower()
    return node["bs"], node["be"], encoding


def decode(data: bytes, encoding: str) -> bytes:
    """Undo a content-transfer-encoding (RFC 2045 §6); linear in len(data)."""
    if encoding in _IDENTITY:
        return data
    if encoding == "base64":
        # Non-strict: line breaks and stray characters are skipped (RFC 2045 §6.8).
        try:
            return binascii.a2b_base64(data)
        except binascii.Error:
            # Missing padding: pad it (a lone trailing character carries
            # no whole octet and is dropped), as most clients would.
            usable = bytes(c for c in data if c in _B64_ALPHABET)
            if len(usable) % 4 == 1:
                usable = usable[:-1]
            return binascii.a2b_base64(usable + b"=" * (-len(usable) % 4))
    if encoding == "quoted-printable":
        return binascii.a2b_qp(data)
    raise UnknownCTE(encoding)


_B64_ALPHABET = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/")


def apply_partial(data: bytes, partial: tuple[int, int] | None) -> bytes:
    """RFC 3516 §4.2: <origin.count> counts octets of the decoded data."""
    if partial is None:
        return data
    origin, count = partial
    return data[origin:origin + count]


def literal(data: bytes) -> bytes:
    """literal8 when the data holds NUL (RFC 3516 §4.2), else a literal."""
    marker = b"~{%d}\r\n" if b"\0" in data else b"{%d}\r\n"
    return marker % len(data) + data
