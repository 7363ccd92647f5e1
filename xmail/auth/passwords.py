# -*- test-case-name: tests.auth.test_passwords -*-
"""Password hashing: argon2id for new hashes, verify-only legacy schemes.

New passwords are hashed with argon2id (19 MiB, t=2, p=1: the OWASP
minimum, about 30 ms here).  Hashes imported from other servers are verified
and replaced by an argon2id hash on the next successful login:

- modular crypt: bcrypt (``$2a$ $2b$ $2y$``), sha512_crypt (``$6$``),
  sha256_crypt (``$5$``), md5_crypt (``$1$``), argon2i/argon2id;
- Dovecot's ``{SCHEME}`` prefixed form (doveadm pw -s SCHEME): SHA512-CRYPT,
  SHA256-CRYPT, MD5-CRYPT, BLF-CRYPT, CRYPT, ARGON2I, ARGON2ID, SSHA,
  SSHA256, SSHA512, SMD5, SHA, SHA256, SHA512, PLAIN-MD5, LDAP-MD5, PLAIN,
  CLEAR, CLEARTEXT, with an optional ``.b64`` / ``.hex`` encoding suffix.

Verification never raises for a bad password or a password the scheme cannot
take (bcrypt refuses more than 72 bytes): it answers False.  Only a stored
hash that no scheme recognises is an error, and `identify` lets the
directory refuse such a hash when it is imported.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from dataclasses import dataclass

from passlib.context import CryptContext

# Longer passwords are refused outright: hashing megabytes is a denial of service.
MAX_PASSWORD_BYTES = 1024

ARGON2_MEMORY_KIB = 19456  # 19 MiB
ARGON2_TIME_COST = 2
ARGON2_PARALLELISM = 1

_CRYPT_SCHEMES = ["argon2", "bcrypt", "sha512_crypt", "sha256_crypt", "md5_crypt"]

# "auto": every scheme but the default is deprecated, so needs_update() is
# True for legacy hashes and for argon2 hashes with other parameters.
CONTEXT = CryptContext(
    schemes=_CRYPT_SCHEMES,
    default="argon2",
    deprecated="auto",
    argon2__type="ID",
    argon2__memory_cost=ARGON2_MEMORY_KIB,
    argon2__rounds=ARGON2_TIME_COST,
    argon2__parallelism=ARGON2_PARALLELISM,
)

# Dovecot scheme -> the modular-crypt prefixes it may wrap.
_DOVECOT_CRYPT = {
    "SHA512-CRYPT": ("$6$",),
    "SHA256-CRYPT": ("$5$",),
    "MD5-CRYPT": ("$1$",),
    "BLF-CRYPT": ("$2a$", "$2b$", "$2y$"),
    "ARGON2I": ("$argon2i$",),
    "ARGON2ID": ("$argon2id$",),
    "CRYPT": ("$6$", "$5$", "$1$", "$2a$", "$2b$", "$2y$"),
}
# Dovecot scheme -> (hashlib name, salted).  Dovecot encodes these in base64
# unless told ".hex"; PLAIN-MD5 defaults to hex.  The digest (+ salt) length
# tells the encodings apart, as Dovecot itself does.
_DOVECOT_DIGEST = {
    "SHA": ("sha1", False),
    "SHA1": ("sha1", False),
    "SHA256": ("sha256", False),
    "SHA512": ("sha512", False),
    "PLAIN-MD5": ("md5", False),
    "LDAP-MD5": ("md5", False),
    "SSHA": ("sha1", True),
    "SSHA256": ("sha256", True),
    "SSHA512": ("sha512", True),
    "SMD5": ("md5", True),
}
_DOVECOT_PLAIN = {"PLAIN", "CLEAR", "CLEARTEXT"}
_DOVECOT_PREFIX = re.compile(r"\{([A-Za-z0-9-]+)(?:\.(b64|base64|hex))?\}(.*)\Z", re.S)


class UnknownHash(ValueError):
    """A stored hash no supported scheme recognises."""


@dataclass(frozen=True, slots=True)
class Verification:
    ok: bool
    # A replacement hash to store when the password was right but the stored
    # hash is legacy or weaker than the current policy; else None.
    new_hash: str | None = None


def hash_password(password: str) -> str:
    """An argon2id hash of password (slow: call off the reactor)."""
    check_password_length(password)
    return CONTEXT.hash(password)


def check_password_length(password: str) -> None:
    if not password:
        raise ValueError("the password is empty")
    if len(password.encode("utf-8")) > MAX_PASSWORD_BYTES:
        raise ValueError(f"the password is longer than {MAX_PASSWORD_BYTES} bytes")
    if any(c in password for c in "\r\n\0"):
        raise ValueError("the password contains CR, LF or NUL")


def identify(stored: str) -> str:
    """The scheme name of a stored hash; raises UnknownHash."""
    match = _DOVECOT_PREFIX.match(stored)
    if match:
        scheme, encoding, rest = match.group(1).upper(), match.group(2), match.group(3)
        if scheme in _DOVECOT_CRYPT:
            if not rest.startswith(_DOVECOT_CRYPT[scheme]):
                raise UnknownHash(f"{{{scheme}}} does not hold a {scheme} hash")
            _crypt_scheme(rest)
            return f"{{{scheme}}}"
        if scheme in _DOVECOT_DIGEST:
            _decode_digest(scheme, encoding, rest)
            return f"{{{scheme}}}"
        if scheme in _DOVECOT_PLAIN:
            return f"{{{scheme}}}"
        raise UnknownHash(f"unsupported password scheme {{{scheme}}}")
    return _crypt_scheme(stored)


def _crypt_scheme(stored: str) -> str:
    """The scheme of a modular-crypt hash, parsed in full (identify() alone
    only looks at the prefix)."""
    scheme = CONTEXT.identify(stored)
    if scheme is None:
        raise UnknownHash("unrecognised password hash")
    try:
        parsed = CONTEXT.handler(scheme).from_string(stored)
    except (ValueError, TypeError) as e:
        raise UnknownHash(f"malformed {scheme} hash: {e}") from None
    if not getattr(parsed, "checksum", None):
        # A salt/config string without a hash part matches nothing.
        raise UnknownHash(f"malformed {scheme} hash: no checksum")
    return scheme


def verify(password: str, stored: str) -> Verification:
    """Check password against a stored hash (slow: call off the reactor)."""
    try:
        check_password_length(password)
    except ValueError:
        return Verification(False)
    match = _DOVECOT_PREFIX.match(stored)
    if match is None:
        return _verify_crypt(password, stored)
    scheme, encoding, rest = match.group(1).upper(), match.group(2), match.group(3)
    if scheme in _DOVECOT_CRYPT:
        if not rest.startswith(_DOVECOT_CRYPT[scheme]):
            return Verification(False)
        result = _verify_crypt(password, rest)
        # Stored in the prefixed form: always rewrite in our own.
        return Verification(True, result.new_hash or CONTEXT.hash(password)) if result.ok else result
    if scheme in _DOVECOT_DIGEST:
        ok = _verify_digest(scheme, encoding, rest, password.encode("utf-8"))
    elif scheme in _DOVECOT_PLAIN:
        ok = hmac.compare_digest(rest.encode("utf-8"), password.encode("utf-8"))
    else:
        return Verification(False)
    return Verification(True, CONTEXT.hash(password)) if ok else Verification(False)


def _verify_crypt(password: str, stored: str) -> Verification:
    try:
        ok, new_hash = CONTEXT.verify_and_update(password, stored)
    except ValueError:
        # An unknown or malformed hash, or a password the scheme cannot take:
        # bcrypt refuses more than 72 bytes (passlib and bcrypt >= 5 raise).
        return Verification(False)
    return Verification(bool(ok), new_hash if ok else None)


def _decode_digest(scheme: str, encoding: str | None, text: str) -> bytes:
    algorithm, salted = _DOVECOT_DIGEST[scheme]
    size = hashlib.new(algorithm).digest_size
    text = text.strip()
    candidates: list[str] = []
    if encoding == "hex":
        candidates = ["hex"]
    elif encoding in ("b64", "base64"):
        candidates = ["b64"]
    else:
        candidates = ["hex", "b64"] if scheme == "PLAIN-MD5" else ["b64", "hex"]
    for candidate in candidates:
        try:
            if candidate == "hex":
                raw = bytes.fromhex(text)
            else:
                raw = base64.b64decode(text, validate=True)
        except (ValueError, binascii.Error):
            continue
        if (len(raw) > size) if salted else (len(raw) == size):
            return raw
    raise UnknownHash(f"{{{scheme}}} does not hold a {algorithm} digest")


def _verify_digest(scheme: str, encoding: str | None, text: str, password: bytes) -> bool:
    try:
        raw = _decode_digest(scheme, encoding, text)
    except UnknownHash:
        return False
    algorithm, salted = _DOVECOT_DIGEST[scheme]
    size = hashlib.new(algorithm).digest_size
    digest, salt = (raw[:size], raw[size:]) if salted else (raw, b"")
    return hmac.compare_digest(hashlib.new(algorithm, password + salt).digest(), digest)


# A real hash of a random password, verified when the login name is unknown
# so that a wrong name costs as much time as a wrong password.
_DUMMY_HASH: str | None = None


def dummy_verify(password: str) -> Verification:
    global _DUMMY_HASH
    if _DUMMY_HASH is None:
        import secrets

        _DUMMY_HASH = CONTEXT.hash(secrets.token_urlsafe(24))
    verify(password, _DUMMY_HASH)
    return Verification(False)
