# -*- test-case-name: tests.protocols.managesieve.test_parser -*-
"""What the server writes (RFC 5804 §1.2, §4): strings, status responses.

    response-oknobye = ("OK" / "NO" / "BYE") [SP "(" resp-code ")"] [SP string] CRLF
    string           = quoted / literal-s2c
    literal-s2c      = "{" number "}" CRLF *OCTET

A text goes out as a quoted string when it can be one (no CR, LF or NUL,
at most 1024 octets; RFC 5804 §4), otherwise as a literal, so a script
error message or a script name is never cut or able to break the framing.
"""

from __future__ import annotations

MAX_QUOTED = 1024  # RFC 5804 §4 (errata 2655)


def string(value: str | bytes) -> bytes:
    """A string token: quoted when possible, else a literal."""
    data = value.encode("utf-8") if isinstance(value, str) else value
    if len(data) <= MAX_QUOTED and not any(c in data for c in b"\r\n\0"):
        return b'"' + data.replace(b"\\", b"\\\\").replace(b'"', b'\\"') + b'"'
    return literal(data)


def literal(data: bytes) -> bytes:
    """RFC 5804 §4 literal-s2c: the server's literals never carry "+"."""
    return b"{%d}\r\n" % len(data) + data


def status(kind: str, text: str = "", code: str | bytes | None = None) -> bytes:
    """An OK / NO / BYE line; `code` is put in parentheses as given
    (RFC 5804 §1.3: "QUOTA/MAXSIZE", "NONEXISTENT", or "TAG" SP string)."""
    out = kind.encode("ascii")
    if code:
        out += b" (" + (code.encode("ascii") if isinstance(code, str) else code) + b")"
    if text:
        out += b" " + string(text)
    return out + b"\r\n"


def ok(text: str = "", code: str | bytes | None = None) -> bytes:
    return status("OK", text, code)


def no(text: str = "", code: str | bytes | None = None) -> bytes:
    return status("NO", text, code)


def bye(text: str = "", code: str | bytes | None = None) -> bytes:
    return status("BYE", text, code)
