# -*- test-case-name: tests.sieve.test_srs -*-
"""The Sender Rewriting Scheme for redirected mail.

A redirect sends someone else's message from our servers: with the
original envelope sender, the receiver's SPF check of that sender's domain
fails.  So the envelope sender becomes an address of ours that encodes the
original (the SRS0 form of Shevek's scheme, as postsrsd and Exim write it):

    SRS0=HHHH=TT=orig.example=alice@our.example

HHHH is a keyed hash (HMAC-SHA1, base32, 4 characters) over the timestamp,
domain and local part, TT the day number mod 1024 in base32; a bounce to
such an address is accepted only while the hash matches and the timestamp
is at most MAX_AGE_DAYS old, and is sent on to the original sender
(`reverse`).  The header section and body are untouched, so DKIM and ARC
stay intact.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import time

SECRET_FILE = "srs.key"
MAX_AGE_DAYS = 21
_BASE32 = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


def load_secret(path: str) -> bytes:
    """The data directory's secret, made on first use (0600)."""
    try:
        with open(path, "rb") as f:
            secret = f.read().strip()
        if len(secret) >= 16:
            return secret
    except FileNotFoundError:
        pass
    secret = secrets.token_hex(32).encode()
    tmp = f"{path}.{os.getpid()}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
        f.flush()
        os.fsync(f.fileno())
    try:
        os.link(tmp, path)  # first writer wins; another process's secret is kept
    except FileExistsError:
        pass
    finally:
        os.unlink(tmp)
    with open(path, "rb") as f:
        return f.read().strip()


class SRS:
    def __init__(self, secret: bytes, clock: object = time.time):
        self.secret = secret
        self.clock = clock

    def _day(self) -> int:
        return int(self.clock() // 86400)  # type: ignore[operator]

    def _hash(self, stamp: str, domain: str, local: str) -> str:
        mac = hmac.new(self.secret, f"{stamp}{domain}{local}".lower().encode(), hashlib.sha1).digest()
        # Base32, not base64: a receiver (or our own SMTP) may lower-case
        # the address, so the hash must survive a change of case.
        return base64.b32encode(mac).decode()[:4]

    def forward(self, sender: str, our_domain: str) -> str:
        """The rewritten envelope sender; the null sender and our own
        addresses stay as they are."""
        if not sender or "@" not in sender:
            return sender
        local, _, domain = sender.rpartition("@")
        if domain.lower() == our_domain.lower() or local.upper().startswith("SRS0="):
            return sender
        day = self._day() % 1024
        stamp = _BASE32[day >> 5] + _BASE32[day & 31]
        return f"SRS0={self._hash(stamp, domain, local)}={stamp}={domain}={local}@{our_domain}"

    def reverse(self, address: str) -> str | None:
        """The original sender of a bounce to an SRS0 address of ours, or
        None (not SRS, a forged hash, or expired)."""
        local = address.rpartition("@")[0]
        if not local[:5].upper() == "SRS0=":
            return None
        parts = local[5:].split("=", 3)
        if len(parts) != 4:
            return None
        digest, stamp, domain, original_local = parts
        if len(stamp) != 2 or any(c not in _BASE32 for c in stamp.upper()):
            return None
        expected = self._hash(stamp.upper(), domain, original_local)
        if not hmac.compare_digest(digest.upper().encode(), expected.encode()):
            return None
        then = _BASE32.index(stamp.upper()[0]) << 5 | _BASE32.index(stamp.upper()[1])
        if (self._day() - then) % 1024 > MAX_AGE_DAYS:
            return None
        return f"{original_local}@{domain}"
