# -*- test-case-name: tests.filter.test_dkimkeys,tests.test_cli_dkim -*-
"""The DKIM signing keys of the hosted domains (issue 17, "Outbound signing").

Layout under `data_dir/dkim/` (every directory 0700, every file 0600):

    dkim/example.com/state.json        {"selectors": [{"name", "algorithm", "created", "state"}]}
    dkim/example.com/x20261206.key     PKCS#8 PEM private key of selector x20261206
    dkim/example.com/.lock             serialises `xmailctl dkim` writers (flock)

A domain may have several selectors: an active rsa-2048 one and an active
ed25519 one sign together (RFC 8463 §4: a signer "SHOULD" add an RSA
signature beside Ed25519 while verifiers catch up); `rotate` retires the
old selector of that algorithm, whose public key stays published (and
printed by `xmailctl dkim list` / `xmailctl dns`) until `remove`, so mail
signed just before the rotation still verifies in transit.

The state file is written atomically (temporary file, fsync, rename, fsync
of the directory): the daemon never reads half a file.  The daemon's
`signing_keys(domain)` costs one stat() per message; it re-reads the state
and the keys only when the state file's identity (inode, size, mtime)
changed, so `xmailctl dkim add|rotate` takes effect without a restart.

Selector names are date-based, `x20261206` (rsa) / `x20261206e` (ed25519),
with `-2`, `-3`... before the suffix when that name is taken that day.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

from xmail.addresses import AddressError, normalize_domain

RSA = "rsa"
ED25519 = "ed25519"
ALGORITHMS = (RSA, ED25519)
RSA_BITS = 2048  # RFC 8301 §3.2: at least 1024, 2048 recommended
ACTIVE = "active"
RETIRED = "retired"

STATE_FILE = "state.json"
_SELECTOR = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?$")  # one DNS label, RFC 6376 §3.1
_DOMAIN_PATH = re.compile(r"^[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?$")


class DkimKeyError(Exception):
    """A refused key operation; the message names the domain or selector."""


@dataclass(frozen=True, slots=True)
class Selector:
    name: str
    algorithm: str   # RSA or ED25519
    created: float   # seconds since the epoch
    state: str       # ACTIVE or RETIRED

    def dns_name(self, domain: str) -> str:
        """Where the public key is published (RFC 6376 §3.6.2.1)."""
        return f"{self.name}._domainkey.{domain}"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "algorithm": self.algorithm, "created": self.created,
                "state": self.state}


@dataclass(frozen=True, slots=True)
class SigningKey:
    """An active selector with its private key, ready to sign."""

    domain: str
    selector: str
    algorithm: str
    private_key: Any  # rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey


def key_domain(domain: str) -> str:
    """The normalised domain (A-labels, lower case), safe as a directory name."""
    try:
        name = normalize_domain(domain)
    except AddressError as e:
        raise DkimKeyError(str(e)) from None
    if not _DOMAIN_PATH.match(name) or ".." in name:
        raise DkimKeyError(f"{domain!r} is not a domain name")
    return name


def public_key_record(private_key: Any) -> str:
    """The TXT record text of a key (RFC 6376 §3.6.1; ed25519: RFC 8463 §4.2,
    p= is the raw 32-byte public key, rsa: a DER SubjectPublicKeyInfo)."""
    public = private_key.public_key()
    if isinstance(private_key, ed25519.Ed25519PrivateKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return f"v=DKIM1; k=ed25519; p={base64.b64encode(raw).decode()}"
    der = public.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"v=DKIM1; k=rsa; p={base64.b64encode(der).decode()}"


def new_private_key(algorithm: str) -> Any:
    if algorithm == RSA:
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_BITS)
    if algorithm == ED25519:
        return ed25519.Ed25519PrivateKey.generate()
    raise DkimKeyError(f"unknown DKIM algorithm {algorithm!r} (rsa or ed25519)")


def write_atomically(path: str, data: bytes) -> None:
    """Write `data` as `path` so a reader sees the old file or the new one,
    never a mix, and a crash leaves one of them (0600)."""
    directory = os.path.dirname(path)
    tmp = f"{path}.tmp.{os.getpid()}.{threading.get_ident()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class DkimKeyStore:
    """The keys under one directory (`settings.path("dkim")`).

    Writers are `xmailctl dkim` (add, rotate, remove); the daemon only
    reads, through `signing_keys`, from the filter pool's threads (hence
    the lock around the cache)."""

    def __init__(self, root: str):
        self.root = root
        self._lock = threading.Lock()
        # domain -> (state file identity, keys)
        self._cache: dict[str, tuple[tuple[int, int, int] | None, tuple[SigningKey, ...]]] = {}

    # -- reading -----------------------------------------------------------------------------
    def _domain_dir(self, domain: str) -> str:
        return os.path.join(self.root, domain)

    def _key_path(self, domain: str, selector: str) -> str:
        return os.path.join(self._domain_dir(domain), f"{selector}.key")

    def selectors(self, domain: str) -> list[Selector]:
        """All selectors of a domain (active and retired), oldest first."""
        return self._read_state(key_domain(domain))

    def _read_state(self, domain: str) -> list[Selector]:
        try:
            with open(os.path.join(self._domain_dir(domain), STATE_FILE), "rb") as f:
                data = json.loads(f.read(1 << 20))
        except FileNotFoundError:
            return []
        except (OSError, ValueError) as e:
            raise DkimKeyError(f"{domain}: unreadable DKIM state ({e})") from None
        out = []
        for item in data.get("selectors", []):
            out.append(Selector(str(item["name"]), str(item["algorithm"]), float(item["created"]),
                                str(item["state"])))
        return out

    def private_key(self, domain: str, selector: str) -> Any:
        domain = key_domain(domain)
        try:
            with open(self._key_path(domain, selector), "rb") as f:
                return serialization.load_pem_private_key(f.read(1 << 16), password=None)
        except FileNotFoundError:
            raise DkimKeyError(f"{domain}: no key file for selector {selector}") from None
        except ValueError as e:
            raise DkimKeyError(f"{domain}: selector {selector}: unreadable key ({e})") from None

    def txt_record(self, domain: str, selector: str) -> str:
        """The public key's TXT record text for `xmailctl dns` and `dns check`."""
        return public_key_record(self.private_key(domain, selector))

    def signing_keys(self, domain: str) -> tuple[SigningKey, ...]:
        """The active keys of a domain (none: do not sign).  One stat() when
        nothing changed; blocking file I/O, so called from the filter pool."""
        try:
            domain = key_domain(domain)
        except DkimKeyError:
            return ()
        identity = self._identity(domain)
        with self._lock:
            cached = self._cache.get(domain)
            if cached is not None and cached[0] == identity:
                return cached[1]
        keys: tuple[SigningKey, ...] = ()
        if identity is not None:
            keys = tuple(SigningKey(domain, s.name, s.algorithm, self.private_key(domain, s.name))
                         for s in self._read_state(domain) if s.state == ACTIVE)
        with self._lock:
            self._cache[domain] = (identity, keys)
        return keys

    def _identity(self, domain: str) -> tuple[int, int, int] | None:
        try:
            st = os.stat(os.path.join(self._domain_dir(domain), STATE_FILE))
        except FileNotFoundError:
            return None
        # The inode changes with every rename, even within one mtime tick.
        return (st.st_ino, st.st_size, st.st_mtime_ns)

    # -- writing (xmailctl) --------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self, domain: str) -> Iterator[list[Selector]]:
        """The domain's selectors, under an exclusive lock; the list as left
        by the block is written back atomically."""
        directory = self._domain_dir(domain)
        os.makedirs(self.root, mode=0o700, exist_ok=True)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(os.path.join(directory, ".lock"), os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            selectors = self._read_state(domain)
            before = list(selectors)
            yield selectors
            if selectors != before:
                body = json.dumps({"domain": domain, "selectors": [s.as_json() for s in selectors]},
                                  indent=1)
                write_atomically(os.path.join(directory, STATE_FILE), body.encode() + b"\n")
        finally:
            os.close(fd)

    def add(self, domain: str, algorithm: str = RSA, now: float | None = None) -> Selector:
        """A new active selector with a new key."""
        domain = key_domain(domain)
        with self._locked(domain) as selectors:
            return self._add(domain, selectors, algorithm, now)

    def rotate(self, domain: str, algorithm: str = RSA,
               now: float | None = None) -> tuple[Selector, list[Selector]]:
        """A new active selector; the active ones of that algorithm are
        retired (still published until removed).  -> (new, retired)."""
        domain = key_domain(domain)
        retired: list[Selector] = []
        with self._locked(domain) as selectors:
            for i, s in enumerate(selectors):
                if s.algorithm == algorithm and s.state == ACTIVE:
                    selectors[i] = Selector(s.name, s.algorithm, s.created, RETIRED)
                    retired.append(selectors[i])
            new = self._add(domain, selectors, algorithm, now)
        return new, retired

    def _add(self, domain: str, selectors: list[Selector], algorithm: str, now: float | None) -> Selector:
        if algorithm not in ALGORITHMS:
            raise DkimKeyError(f"unknown DKIM algorithm {algorithm!r} (rsa or ed25519)")
        now = time.time() if now is None else now
        name = self._new_name({s.name for s in selectors}, algorithm, now)
        key = new_private_key(algorithm)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        # The key file first: a state entry never names a missing key.
        write_atomically(self._key_path(domain, name), pem)
        selector = Selector(name, algorithm, now, ACTIVE)
        selectors.append(selector)
        return selector

    def remove(self, domain: str, selector: str) -> Selector:
        """Forget a retired selector and delete its key."""
        domain = key_domain(domain)
        if not os.path.isdir(self._domain_dir(domain)):
            raise DkimKeyError(f"{domain} has no DKIM selector {selector!r}")
        with self._locked(domain) as selectors:
            found = [s for s in selectors if s.name == selector]
            if not found:
                raise DkimKeyError(f"{domain} has no DKIM selector {selector!r}")
            if found[0].state != RETIRED:
                raise DkimKeyError(f"{domain}: selector {selector} is active: rotate it first "
                                   f"(only retired selectors can be removed)")
            selectors.remove(found[0])
        # After the state: a state entry never names a missing key.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._key_path(domain, selector))
        return found[0]

    @staticmethod
    def _new_name(taken: set[str], algorithm: str, now: float) -> str:
        day = time.strftime("%Y%m%d", time.gmtime(now))
        suffix = "e" if algorithm == ED25519 else ""
        for n in range(1, 1000):
            name = f"x{day}{'' if n == 1 else f'-{n}'}{suffix}"
            if name not in taken:
                assert _SELECTOR.match(name)
                return name
        raise DkimKeyError("too many selectors created today")
