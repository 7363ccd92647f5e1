# -*- test-case-name: tests.auth.test_directory -*-
"""Domains, alias domains, users and user aliases, kept in the LMDB index.

Three named databases of the shared environment, JSON values:

- ``dir.domains``: domain -> {"alias_of": primary domain or null, "created"}
- ``dir.users``: address -> {"enabled", "quota_bytes", "quota_messages",
  "settings", "created", "password": hash or ""}
- ``dir.aliases``: alias address -> canonical user address

Reads are short read transactions and never cached, so a change made by
`xmailctl` in another process is seen by the daemon at once.  Admin methods
(add_*, remove_*, set_*) are synchronous: they hash passwords and commit in
the calling thread (`env.write_sync`), so call them from `xmailctl`, tests or
a worker thread, never from the reactor thread of a running daemon.

Rules (DESIGN.md "Addresses and login"):

- Addresses and domains follow the one rule of xmail.addresses: stored
  lowercase, a Unicode domain in its IDNA 2008 / UTS #46 A-label form
  (faß.de is xn--fa-hia.de, not fass.de); local parts are ASCII dot-atoms
  without "/", at most 64 octets.
- Users and aliases live at primary domains; an alias domain receives for
  every user and alias of its primary (local@alias -> local@primary).
- An alias points at a local user; aliases pointing at a removed user are
  removed with it.
- A domain is removed only when no user, alias or alias domain refers to it
  (remove those first): mail must never become silently undeliverable.
  An alias domain can always be removed.
"""

from __future__ import annotations

import json
import re
import time
from typing import Any

from zope.interface import implementer

from xmail import addresses
from xmail.auth import passwords
from xmail.auth.interfaces import DirectoryError, IDirectory, UserRecord
from xmail.config import Settings
from xmail.db.environment import IndexEnvironment

DOMAINS_DB = "dir.domains"
USERS_DB = "dir.users"
ALIASES_DB = "dir.aliases"

MAX_SETTING_VALUE = 1024

_SETTING_KEY = re.compile(r"[a-z][a-z0-9_.-]{0,63}\Z")


def normalize_domain(domain: str) -> str:
    """The lowercase ASCII form of a domain (xmail.addresses); raises DirectoryError."""
    try:
        return addresses.normalize_domain(domain)
    except addresses.AddressError as e:
        raise DirectoryError(str(e)) from None


def normalize_address(address: str) -> str:
    """The lowercase canonical form of local@domain (xmail.addresses); raises DirectoryError."""
    try:
        return addresses.normalize_address(address)
    except addresses.AddressError as e:
        raise DirectoryError(str(e)) from None


def _key(text: str) -> bytes:
    return text.encode("utf-8")


def _load(raw: bytes | None) -> dict[str, Any] | None:
    return None if raw is None else json.loads(raw)


def _dump(value: dict[str, Any]) -> bytes:
    return json.dumps(value, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _record(address: str, data: dict[str, Any]) -> UserRecord:
    return UserRecord(
        address=address,
        enabled=bool(data.get("enabled", True)),
        quota_bytes=data.get("quota_bytes"),
        quota_messages=data.get("quota_messages"),
        settings=dict(data.get("settings", {})),
        created=float(data.get("created", 0.0)),
    )


def _set_setting(data: dict[str, Any], key: str, value: str | None) -> None:
    """A user's or domain's record: set `settings[key]`, or remove it for None/""."""
    settings = dict(data.get("settings", {}))
    if value:
        settings[key] = value
    else:
        settings.pop(key, None)
    data["settings"] = settings


def _check_quota(name: str, value: int | None) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise DirectoryError(f"{name} must be a non-negative integer (0 = unlimited), not {value!r}")
    return value


@implementer(IDirectory)
class Directory:
    """IDirectory over the shared LMDB environment, plus admin methods."""

    def __init__(self, env: IndexEnvironment, settings: Settings):
        self.env = env
        self.settings = settings
        self._domains = env.db(DOMAINS_DB)
        self._users = env.db(USERS_DB)
        self._aliases = env.db(ALIASES_DB)

    # -- IDirectory (short reads, safe on the reactor thread) -------------------
    def is_local_domain(self, domain: str) -> bool:
        try:
            domain = normalize_domain(domain)
        except DirectoryError:
            return False
        with self.env.read() as txn:
            return txn.get(_key(domain), db=self._domains) is not None

    def resolve(self, address: str) -> str | None:
        try:
            address = normalize_address(address)
        except DirectoryError:
            return None
        with self.env.read() as txn:
            return self._resolve(txn, address)

    def user(self, address: str) -> UserRecord | None:
        try:
            address = normalize_address(address)
        except DirectoryError:
            return None
        with self.env.read() as txn:
            data = _load(txn.get(_key(address), db=self._users))
        return None if data is None else _record(address, data)

    def may_send_as(self, user: str, address: str) -> bool:
        try:
            user = normalize_address(user)
        except DirectoryError:
            return False
        return self.resolve(address) == user

    def setting(self, user: str, key: str, default: str | None = None) -> str | None:
        record = self.user(user)
        if record is None:
            return default
        return record.settings.get(key.lower(), default)

    # -- login support (used by the checker) -------------------------------------
    def credentials(self, address: str) -> tuple[UserRecord, str] | None:
        """(record, stored password hash) of a canonical address, or None.
        The hash is "" for a user without a password (cannot log in)."""
        try:
            address = normalize_address(address)
        except DirectoryError:
            return None
        with self.env.read() as txn:
            data = _load(txn.get(_key(address), db=self._users))
        if data is None:
            return None
        return _record(address, data), data.get("password", "")

    def replace_hash_txn(self, txn: Any, address: str, old_hash: str, new_hash: str) -> bool:
        """In a write transaction: store new_hash if the stored hash is still
        old_hash (a concurrent `user passwd` wins).  For rehash-on-login."""
        data = _load(txn.get(_key(address), db=self._users))
        if data is None or data.get("password") != old_hash:
            return False
        data["password"] = new_hash
        txn.put(_key(address), _dump(data), db=self._users)
        return True

    def _resolve(self, txn: Any, address: str) -> str | None:
        if txn.get(_key(address), db=self._users) is not None:
            return address
        target = txn.get(_key(address), db=self._aliases)
        if target is not None:
            return target.decode("utf-8")
        local, _, domain = address.rpartition("@")
        data = _load(txn.get(_key(domain), db=self._domains))
        if data is not None and data.get("alias_of"):
            primary = f"{local}@{data['alias_of']}"
            if txn.get(_key(primary), db=self._users) is not None:
                return primary
            target = txn.get(_key(primary), db=self._aliases)
            if target is not None:
                return target.decode("utf-8")
        return None

    # -- domains -------------------------------------------------------------------
    def add_domain(self, domain: str) -> str:
        domain = normalize_domain(domain)

        def txn_fn(txn: Any) -> str:
            if txn.get(_key(domain), db=self._domains) is not None:
                raise DirectoryError(f"domain {domain} already exists")
            txn.put(_key(domain), _dump({"alias_of": None, "created": time.time()}), db=self._domains)
            return domain

        return self.env.write_sync(txn_fn)

    def add_alias_domain(self, alias: str, target: str) -> str:
        alias = normalize_domain(alias)
        target = normalize_domain(target)
        if alias == target:
            raise DirectoryError(f"{alias} cannot be an alias of itself")

        def txn_fn(txn: Any) -> str:
            if txn.get(_key(alias), db=self._domains) is not None:
                raise DirectoryError(f"domain {alias} already exists")
            data = _load(txn.get(_key(target), db=self._domains))
            if data is None:
                raise DirectoryError(f"no such domain {target}")
            if data.get("alias_of"):
                raise DirectoryError(f"{target} is itself an alias of {data['alias_of']}")
            txn.put(_key(alias), _dump({"alias_of": target, "created": time.time()}), db=self._domains)
            return alias

        return self.env.write_sync(txn_fn)

    def remove_domain(self, domain: str) -> None:
        domain = normalize_domain(domain)
        suffix = "@" + domain

        def txn_fn(txn: Any) -> None:
            data = _load(txn.get(_key(domain), db=self._domains))
            if data is None:
                raise DirectoryError(f"no such domain {domain}")
            if not data.get("alias_of"):
                users = [k.decode() for k, _ in txn.cursor(db=self._users) if k.decode().endswith(suffix)]
                if users:
                    raise DirectoryError(f"domain {domain} still has {len(users)} user(s); remove them first")
                aliases = [k.decode() for k, _ in txn.cursor(db=self._aliases) if k.decode().endswith(suffix)]
                if aliases:
                    raise DirectoryError(
                        f"domain {domain} still has {len(aliases)} alias(es); remove them first")
                dependants = sorted(
                    k.decode() for k, v in txn.cursor(db=self._domains)
                    if json.loads(v).get("alias_of") == domain
                )
                if dependants:
                    raise DirectoryError(
                        f"domain {domain} has alias domains ({', '.join(dependants)}); remove them first")
            txn.delete(_key(domain), db=self._domains)

        self.env.write_sync(txn_fn)

    def list_domains(self) -> list[tuple[str, str | None]]:
        """(domain, alias_of or None), sorted by domain."""
        with self.env.read() as txn:
            return [(k.decode(), json.loads(v).get("alias_of")) for k, v in txn.cursor(db=self._domains)]

    def domain_settings(self, domain: str) -> dict[str, str]:
        """Per-domain settings (`xmailctl domain set D KEY=VALUE`); an alias
        domain has its primary's.  {} for an unknown domain.  A short read."""
        try:
            domain = normalize_domain(domain)
        except DirectoryError:
            return {}
        with self.env.read() as txn:
            data = _load(txn.get(_key(domain), db=self._domains))
            if data is not None and data.get("alias_of"):
                data = _load(txn.get(_key(data["alias_of"]), db=self._domains))
        return dict(data.get("settings", {})) if data else {}

    def set_domain_setting(self, domain: str, key: str, value: str | None) -> None:
        """Set a per-domain setting of a primary domain; None or "" removes it.
        The caller (the CLI) checks keys and values against what it knows."""
        domain = normalize_domain(domain)
        if not isinstance(key, str) or not _SETTING_KEY.match(key.lower()):
            raise DirectoryError(f"invalid setting name {key!r}: letters, digits, '_', '.', '-'")
        key = key.lower()
        if value and (any(c in value for c in "\r\n\0") or len(value) > MAX_SETTING_VALUE):
            raise DirectoryError(f"invalid value for {key}")

        def txn_fn(txn: Any) -> None:
            data = _load(txn.get(_key(domain), db=self._domains))
            if data is None:
                raise DirectoryError(f"no such domain {domain}")
            if data.get("alias_of"):
                raise DirectoryError(f"{domain} is an alias domain: set it on {data['alias_of']}")
            _set_setting(data, key, value)
            txn.put(_key(domain), _dump(data), db=self._domains)

        self.env.write_sync(txn_fn)

    # -- users -----------------------------------------------------------------------
    def add_user(self, address: str, password: str | None = None, password_hash: str | None = None,
                 quota_bytes: int | None = None, quota_messages: int | None = None) -> UserRecord:
        """Add a user.  Without password or password_hash the user exists
        (receives mail) but cannot log in until `set_password`."""
        address = normalize_address(address)
        if password is not None and password_hash is not None:
            raise DirectoryError("give a password or a password hash, not both")
        stored = self._new_hash(password, password_hash)
        quota_bytes = _check_quota("quota_bytes", quota_bytes)
        quota_messages = _check_quota("quota_messages", quota_messages)
        data = {
            "enabled": True,
            "quota_bytes": quota_bytes,
            "quota_messages": quota_messages,
            "settings": {},
            "created": time.time(),
            "password": stored,
        }
        domain = address.rpartition("@")[2]

        def txn_fn(txn: Any) -> UserRecord:
            self._require_primary_domain(txn, domain)
            if txn.get(_key(address), db=self._users) is not None:
                raise DirectoryError(f"user {address} already exists")
            target = txn.get(_key(address), db=self._aliases)
            if target is not None:
                raise DirectoryError(f"{address} is an alias of {target.decode()}")
            txn.put(_key(address), _dump(data), db=self._users)
            return _record(address, data)

        return self.env.write_sync(txn_fn)

    def set_password(self, address: str, password: str) -> None:
        stored = self._new_hash(password, None)
        self._update_user(address, lambda data: data.update(password=stored))

    def set_password_hash(self, address: str, password_hash: str) -> None:
        stored = self._new_hash(None, password_hash)
        self._update_user(address, lambda data: data.update(password=stored))

    def set_enabled(self, address: str, enabled: bool) -> None:
        self._update_user(address, lambda data: data.update(enabled=bool(enabled)))

    def set_quota(self, address: str, **quotas: int | None) -> None:
        """set_quota(address, quota_bytes=N, quota_messages=N): change the
        quotas given; None means the [limits] default, 0 unlimited."""
        changes: dict[str, int | None] = {}
        for name, value in quotas.items():
            if name not in ("quota_bytes", "quota_messages"):
                raise DirectoryError(f"unknown quota {name!r}")
            changes[name] = _check_quota(name, value)
        self._update_user(address, lambda data: data.update(changes))

    def set_setting(self, address: str, key: str, value: str | None) -> None:
        """Set a per-user setting; value None (or "") removes it."""
        if not isinstance(key, str) or not _SETTING_KEY.match(key.lower()):
            raise DirectoryError(f"invalid setting name {key!r}: letters, digits, '_', '.', '-'")
        key = key.lower()
        if value is not None:
            if not isinstance(value, str) or any(c in value for c in "\r\n\0"):
                raise DirectoryError(f"invalid value for {key}: no CR, LF or NUL")
            if len(value) > MAX_SETTING_VALUE:
                raise DirectoryError(f"value for {key} longer than {MAX_SETTING_VALUE} characters")

        self._update_user(address, lambda data: _set_setting(data, key, value))

    def remove_user(self, address: str) -> list[str]:
        """Remove a user and the aliases pointing at it (returned).  The
        user's Maildir stays on disk: deleting mail is the operator's call."""
        address = normalize_address(address)

        def txn_fn(txn: Any) -> list[str]:
            if txn.get(_key(address), db=self._users) is None:
                raise DirectoryError(f"no such user {address}")
            txn.delete(_key(address), db=self._users)
            removed = [k.decode() for k, v in txn.cursor(db=self._aliases) if v.decode() == address]
            for alias in removed:
                txn.delete(_key(alias), db=self._aliases)
            return removed

        return self.env.write_sync(txn_fn)

    def list_users(self, domain: str | None = None) -> list[UserRecord]:
        suffix = None if domain is None else "@" + normalize_domain(domain)
        with self.env.read() as txn:
            if suffix is not None and txn.get(_key(suffix[1:]), db=self._domains) is None:
                raise DirectoryError(f"no such domain {suffix[1:]}")
            return [
                _record(k.decode(), json.loads(v))
                for k, v in txn.cursor(db=self._users)
                if suffix is None or k.decode().endswith(suffix)
            ]

    def user_show(self, address: str) -> dict[str, Any]:
        """Everything about a user, for `xmailctl user show` (no hash)."""
        address = normalize_address(address)
        with self.env.read() as txn:
            data = _load(txn.get(_key(address), db=self._users))
            if data is None:
                raise DirectoryError(f"no such user {address}")
            aliases = sorted(k.decode() for k, v in txn.cursor(db=self._aliases) if v.decode() == address)
        stored = data.get("password", "")
        try:
            scheme = passwords.identify(stored) if stored else "none"
        except passwords.UnknownHash:
            scheme = "unknown"
        record = _record(address, data)
        return {
            "address": address,
            "enabled": record.enabled,
            "quota_bytes": record.quota_bytes,
            "quota_messages": record.quota_messages,
            "created": record.created,
            "password_scheme": scheme,
            "aliases": aliases,
            "settings": record.settings,
        }

    # -- aliases ----------------------------------------------------------------------
    def add_alias(self, alias: str, target: str) -> str:
        """Add alias -> target; target may itself be an alias or use an alias
        domain, it is stored as the canonical user address it resolves to."""
        alias = normalize_address(alias)
        target = normalize_address(target)

        def txn_fn(txn: Any) -> str:
            self._require_primary_domain(txn, alias.rpartition("@")[2])
            if txn.get(_key(alias), db=self._users) is not None:
                raise DirectoryError(f"{alias} is a user")
            existing = txn.get(_key(alias), db=self._aliases)
            if existing is not None:
                raise DirectoryError(f"alias {alias} already exists (-> {existing.decode()})")
            canonical = self._resolve(txn, target)
            if canonical is None:
                raise DirectoryError(f"no such user {target}")
            txn.put(_key(alias), _key(canonical), db=self._aliases)
            return canonical

        return self.env.write_sync(txn_fn)

    def remove_alias(self, alias: str) -> None:
        alias = normalize_address(alias)

        def txn_fn(txn: Any) -> None:
            if not txn.delete(_key(alias), db=self._aliases):
                raise DirectoryError(f"no such alias {alias}")

        self.env.write_sync(txn_fn)

    def list_aliases(self) -> list[tuple[str, str]]:
        """(alias, canonical target), sorted by alias."""
        with self.env.read() as txn:
            return [(k.decode(), v.decode()) for k, v in txn.cursor(db=self._aliases)]

    # -- helpers -----------------------------------------------------------------------
    def _require_primary_domain(self, txn: Any, domain: str) -> None:
        data = _load(txn.get(_key(domain), db=self._domains))
        if data is None:
            raise DirectoryError(f"no such domain {domain}; add it first")
        if data.get("alias_of"):
            raise DirectoryError(f"{domain} is an alias domain of {data['alias_of']}; use that domain")

    def _new_hash(self, password: str | None, password_hash: str | None) -> str:
        if password_hash is not None:
            if any(c in password_hash for c in "\r\n\0") or len(password_hash) > 1024:
                raise DirectoryError("invalid password hash")
            try:
                passwords.identify(password_hash)
            except passwords.UnknownHash as e:
                raise DirectoryError(str(e)) from None
            return password_hash
        if password is None:
            return ""
        try:
            return passwords.hash_password(password)
        except ValueError as e:
            raise DirectoryError(str(e)) from None

    def _update_user(self, address: str, change: Any) -> None:
        address = normalize_address(address)

        def txn_fn(txn: Any) -> None:
            data = _load(txn.get(_key(address), db=self._users))
            if data is None:
                raise DirectoryError(f"no such user {address}")
            change(data)
            txn.put(_key(address), _dump(data), db=self._users)

        self.env.write_sync(txn_fn)


__all__ = ["Directory", "normalize_address", "normalize_domain"]
