# -*- test-case-name: tests.auth.test_sasl -*-
"""SASL PLAIN and LOGIN, server side, without I/O: the one implementation
behind SMTP AUTH (RFC 4954), POP3 AUTH (RFC 5034) and IMAP AUTHENTICATE
(RFC 3501 §6.2.2, RFC 4959), and later ManageSieve and proxy logins.

A protocol decodes each client line with `decode_response` (base64, "*"
cancels) or `decode_initial` (an initial response, where "=" is empty),
feeds the bytes to `Exchange.step` and gets back either the next challenge
(raw bytes, which the protocol base64-encodes in its own framing) or the
finished `Credentials`.  Anything malformed raises `SaslError`; the
exchange is then over and the protocol answers with its syntax error.

One rule for every mechanism and every protocol:
- identities and passwords are UTF-8 (RFC 4616 §2, UTF8SAFE: any
  character but NUL), at most MAX_IDENTITY_BYTES / MAX_PASSWORD_BYTES,
  neither empty (RFC 4616 §2: authcid and passwd are 1*SAFE);
- the authorisation identity (authzid) is kept only when it differs from
  the authentication identity (case-insensitively); whether the user may
  act as it is decided after the password, by `xmail.auth.login.login`
  (today: only as itself or one of its own addresses, no proxy
  authorisation).
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass, field

from xmail.auth.passwords import MAX_PASSWORD_BYTES

MECHANISMS = ("PLAIN", "LOGIN")
MAX_IDENTITY_BYTES = 320  # an address: 64 + 1 + 255 (RFC 5321 §4.5.3.1)
# base64 of the longest PLAIN message, with room to spare; a longer line is
# refused before it is decoded.
MAX_RESPONSE_BYTES = 4 * ((2 * MAX_IDENTITY_BYTES + MAX_PASSWORD_BYTES + 2) // 3 + 1) + 16


class SaslError(Exception):
    """A malformed response: the exchange is over.  str() says why, in
    words fit for the client."""


class SaslCancelled(SaslError):
    """The client sent "*" (RFC 4954 §4, RFC 5034 §4, RFC 3501 §6.2.2)."""


@dataclass(frozen=True)
class Credentials:
    """What a finished exchange proves: who, with which password, acting as
    whom ("" = as itself)."""

    authcid: str
    password: str = field(repr=False)  # never in a log line or a traceback
    authzid: str = ""


def decode_response(line: bytes) -> bytes:
    """One client response line (without CRLF) -> the decoded bytes.
    "*" cancels; anything but strict base64 is a SaslError."""
    line = line.strip()
    if line == b"*":
        raise SaslCancelled("authentication cancelled")
    if len(line) > MAX_RESPONSE_BYTES:
        raise SaslError("SASL response too long")
    try:
        return base64.b64decode(line, validate=True)
    except (binascii.Error, ValueError):
        raise SaslError("invalid base64 in SASL response") from None


def decode_initial(argument: bytes | str) -> bytes:
    """An initial response (RFC 4954 §4, RFC 5034 §4, RFC 4959 §3): "=" is
    an empty response, anything else base64."""
    if isinstance(argument, str):
        argument = argument.encode("ascii", "replace")
    if argument.strip() == b"=":
        return b""
    if argument.strip() == b"*":  # not a cancel here: simply not base64
        raise SaslError("invalid base64 in SASL response")
    return decode_response(argument)


def encode_challenge(challenge: bytes) -> bytes:
    return base64.b64encode(challenge)


def _utf8(data: bytes, limit: int, what: str) -> str:
    """The one text rule: non-empty UTF-8 without NUL, at most `limit` bytes."""
    if not data:
        raise SaslError(f"empty {what}")
    if len(data) > limit:
        raise SaslError(f"{what} too long")
    if b"\0" in data:
        raise SaslError(f"NUL in {what}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SaslError(f"{what} is not UTF-8") from None


def credentials(authcid: bytes | str, password: bytes | str, authzid: bytes | str = b"") -> Credentials:
    """The same rule for a login that is not SASL (IMAP LOGIN, POP3
    USER/PASS): text in, checked Credentials out, or SaslError."""
    def raw(value: bytes | str) -> bytes:
        return value if isinstance(value, bytes) else value.encode("utf-8", "surrogateescape")

    name = _utf8(raw(authcid), MAX_IDENTITY_BYTES, "user name")
    secret = _utf8(raw(password), MAX_PASSWORD_BYTES, "password")
    acting = _utf8(raw(authzid), MAX_IDENTITY_BYTES, "authorization identity") if authzid else ""
    if acting.lower() == name.lower():
        acting = ""
    return Credentials(name, secret, acting)


class Exchange:
    """One mechanism's server side.  step(None) starts an exchange without
    an initial response; step(bytes) feeds one decoded response.
    -> the next challenge (bytes) or the finished Credentials."""

    name = ""

    def step(self, response: bytes | None) -> bytes | Credentials:  # pragma: no cover - abstract
        raise NotImplementedError


class Plain(Exchange):
    """RFC 4616 §2: message = [authzid] UTF8NUL authcid UTF8NUL passwd."""

    name = "PLAIN"

    def step(self, response: bytes | None) -> bytes | Credentials:
        if response is None:
            return b""  # RFC 4422 §5: an empty challenge asks for the message
        parts = response.split(b"\0")
        if len(parts) != 3:
            raise SaslError("malformed PLAIN response")
        authzid, authcid, password = parts
        return credentials(authcid, password, authzid)


class Login(Exchange):
    """draft-murchison-sasl-login: "Username:", then "Password:".  An
    initial response is the user name."""

    name = "LOGIN"

    def __init__(self) -> None:
        self._username: bytes | None = None

    def step(self, response: bytes | None) -> bytes | Credentials:
        if response is None:
            return b"Username:"
        if self._username is None:
            _utf8(response, MAX_IDENTITY_BYTES, "user name")
            self._username = response
            return b"Password:"
        return credentials(self._username, response)


def exchange(mechanism: str) -> Exchange | None:
    """A new exchange for a mechanism name (any case), or None."""
    name = mechanism.upper()
    if name == "PLAIN":
        return Plain()
    if name == "LOGIN":
        return Login()
    return None
