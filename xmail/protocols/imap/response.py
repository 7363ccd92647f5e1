# -*- test-case-name: tests.protocols.test_imap_grammar, tests.protocols.test_imap_tokenizer -*-
"""Serialising IMAP data items (RFC 3501 §4, §9) and mailbox names (§5.1.3).

`render(value)` turns Python values into wire bytes:

- None -> NIL; int -> number; `Raw` -> as is (atoms, flags, pre-rendered data)
- str / bytes -> a quoted string when it can be one, else a literal
- list / tuple -> a parenthesised, space-separated list

Mailbox names travel as modified UTF-7 (RFC 3501 §5.1.3) via the one codec,
xmail.message.mutf7 — or as UTF-8 for a session that enabled IMAP4rev2
(RFC 9051 §5.1, `utf8=True`).
"""

from __future__ import annotations

import re
from typing import Any

from xmail.message import mutf7


class Raw(bytes):
    """Bytes written exactly as they are (atoms, flags, section names)."""


NIL = Raw(b"NIL")

# Strings that can be sent quoted: TEXT-CHAR without CR/LF, 7-bit, short.
_QUOTABLE = re.compile(rb'[\x01-\x09\x0b\x0c\x0e-\x7f]{0,1024}\Z')
_ATOM_SAFE = re.compile(rb"[!#$&'+-Z^-z|}~]+\Z")  # atom-char without specials


_TEXT_CHARS = bytes(b if 0x20 <= b < 0x7F else 0x3F for b in range(256))  # others -> "?"


def resp_text(text: str) -> bytes:
    """Human-readable status text as RFC 3501 §9 `text` (1*TEXT-CHAR: 7-bit,
    no CR/LF).  Texts may quote client input; anything else is escaped so a
    client can neither inject a line nor 8-bit bytes into its logs."""
    return text.encode("ascii", "backslashreplace").translate(_TEXT_CHARS)


def quoted(value: bytes) -> bytes:
    return b'"' + value.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'


def literal(value: bytes) -> bytes:
    return b"{%d}\r\n" % len(value) + value


def string(value: bytes | str) -> bytes:
    """A string: quoted if possible, else a literal (8-bit, CR, LF, long)."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    if _QUOTABLE.match(value):
        return quoted(value)
    return literal(value)


def nstring(value: bytes | str | None) -> bytes:
    return b"NIL" if value is None else string(value)


def astring(value: bytes | str) -> bytes:
    """An atom when the value is a safe atom, else a string."""
    if isinstance(value, str):
        value = value.encode("utf-8")
    if _ATOM_SAFE.match(value) and value.upper() != b"NIL":
        return value
    return string(value)


def render(value: Any) -> bytes:
    if value is None:
        return b"NIL"
    if isinstance(value, Raw):
        return bytes(value)
    if isinstance(value, bool):
        raise TypeError("bool is not an IMAP value")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, (bytes, str)):
        return string(value)
    if isinstance(value, (list, tuple)):
        return b"(" + b" ".join(render(v) for v in value) + b")"
    raise TypeError(f"cannot render {type(value).__name__} as IMAP data")


# --- mailbox names (RFC 3501 §5.1.3) -----------------------------------------


def encode_mailbox(name: str, utf8: bool = False) -> bytes:
    """Wire form of a Unicode folder name: modified UTF-7, or UTF-8 after
    ENABLE IMAP4rev2 (RFC 9051 §5.1)."""
    if utf8:
        return name.encode("utf-8")
    return mutf7.encode(name).encode("ascii")


def decode_mailbox(raw: bytes, utf8: bool = False) -> str:
    """Unicode name from the wire.  Clients that send raw UTF-8 (8-bit bytes,
    not allowed by RFC 3501 but common) are accepted as UTF-8.  With utf8
    (IMAP4rev2, RFC 9051 §5.1) the name is UTF-8 only: "&" is itself, no
    modified UTF-7 is decoded (UnicodeDecodeError for bad UTF-8)."""
    if utf8 or any(b >= 0x80 for b in raw):
        return raw.decode("utf-8")
    # Strict: a name must be canonical so that it comes back byte for byte
    # in LIST (ValueError otherwise).
    return mutf7.decode(raw.decode("ascii"))


# RFC 9051 §9: QUOTED-CHAR includes UTF8-2 / UTF8-3 / UTF8-4; still no
# CR, LF or NUL, and short.
_QUOTABLE_UTF8 = re.compile(rb'[^\x00\r\n]{0,1024}\Z')


def mailbox(name: str, utf8: bool = False) -> bytes:
    """A folder name as an astring on the wire (UTF-8 for IMAP4rev2)."""
    wire = encode_mailbox(name, utf8)
    if utf8 and not _ATOM_SAFE.match(wire) and _QUOTABLE_UTF8.match(wire):
        return quoted(wire)
    return astring(wire)


def flag_list(flags: Any) -> bytes:
    return b"(" + b" ".join(f.encode("utf-8") if isinstance(f, str) else f for f in flags) + b")"
