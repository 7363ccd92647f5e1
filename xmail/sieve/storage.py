# -*- test-case-name: tests.sieve.test_storage -*-
"""Scripts in the shared LMDB index (issue 18).

Two named databases: ``sieve.scripts`` (key ``owner NUL name``, value the
script's UTF-8 text) and ``sieve.active`` (key owner, value the active
script's name).  Owners are described in xmail.sieve.interfaces.  Reads are
a handful of key lookups; `chain` gives delivery everything it runs for
one recipient in one read transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from zope.interface import implementer

from xmail.db.environment import IndexEnvironment, keys_with_prefix
from xmail.sieve.compiler import EXTENSIONS, compile_script
from xmail.sieve.interfaces import (
    AFTER,
    BEFORE,
    MANAGED_PREFIX,
    MAX_NAME_LENGTH,
    MAX_SCRIPT_SIZE,
    MAX_SCRIPTS,
    ISieveScripts,
    NoSuchScript,
    ScriptActive,
    ScriptExists,
    SieveQuotaError,
    domain_owner,
)

SCRIPTS_DB = "sieve.scripts"
ACTIVE_DB = "sieve.active"


def _key(owner: str, name: str) -> bytes:
    return f"{owner}\0{name}".encode()


@implementer(ISieveScripts)
class SieveScripts:
    """`write` runs a function in a write transaction: the environment's
    `write` in the daemon (-> Deferred), `write_sync` in xmailctl."""

    max_script_size = MAX_SCRIPT_SIZE
    max_scripts = MAX_SCRIPTS

    def __init__(self, env: IndexEnvironment, write: Callable[[Callable[[Any], Any]], Any] | None = None):
        self.env = env
        self._write = write or env.write_sync
        self._scripts = env.db(SCRIPTS_DB)
        self._active = env.db(ACTIVE_DB)

    @property
    def extensions(self) -> tuple[str, ...]:
        return tuple(EXTENSIONS)

    # -- validation ------------------------------------------------------------------
    def check(self, text: bytes) -> Any:
        return compile_script(text)

    def valid_name(self, name: str) -> bool:
        # RFC 5804 §1.6: no control characters (CR, LF, NUL ...), not empty.
        return (0 < len(name) <= MAX_NAME_LENGTH
                and not any(ord(c) < 0x20 or 0x7f <= ord(c) <= 0x9f or c in "\u2028\u2029" for c in name))

    # -- reads -------------------------------------------------------------------------
    def _names(self, txn: Any, owner: str) -> list[str]:
        prefix = f"{owner}\0".encode()
        return [key[len(prefix):].decode() for key in keys_with_prefix(txn, self._scripts, prefix)]

    def list(self, owner: str) -> list[tuple[str, bool]]:
        with self.env.read() as txn:
            active = txn.get(owner.encode(), db=self._active)
            active_name = active.decode() if active is not None else None
            return [(name, name == active_name) for name in self._names(txn, owner)]

    def get(self, owner: str, name: str) -> str | None:
        with self.env.read() as txn:
            value = txn.get(_key(owner, name), db=self._scripts)
        return value.decode() if value is not None else None

    def active(self, owner: str) -> str | None:
        with self.env.read() as txn:
            value = txn.get(owner.encode(), db=self._active)
        return value.decode() if value is not None else None

    def space_for(self, owner: str, name: str, size: int) -> SieveQuotaError | None:
        if size > self.max_script_size:
            return SieveQuotaError("QUOTA/MAXSIZE", f"Script is larger than {self.max_script_size} octets")
        with self.env.read() as txn:
            return self._count_check(txn, owner, name)

    def _count_check(self, txn: Any, owner: str, name: str) -> SieveQuotaError | None:
        if txn.get(_key(owner, name), db=self._scripts) is not None:
            return None  # a replacement
        if len(self._names(txn, owner)) >= self.max_scripts:
            return SieveQuotaError("QUOTA/MAXSCRIPTS", f"No more than {self.max_scripts} scripts")
        return None

    def chain(self, user: str) -> list[tuple[str, str, str]]:
        """(owner, name, text) of every script delivery runs for `user`, in
        order: the domain's before scripts, the user's active script, the
        user's managed scripts (vacation, forward), the domain's after
        scripts.  One read transaction; [] for most users."""
        domain = user.rpartition("@")[2]
        out: list[tuple[str, str, str]] = []
        with self.env.read() as txn:
            if txn.stat(self._scripts)["entries"] == 0:
                return out

            def add(owner: str, names: list[str]) -> None:
                for name in names:
                    value = txn.get(_key(owner, name), db=self._scripts)
                    if value is not None:
                        out.append((owner, name, value.decode()))

            before = domain_owner(domain, BEFORE)
            add(before, self._names(txn, before))
            names = self._names(txn, user)
            active = txn.get(user.encode(), db=self._active)
            if active is not None and not active.decode().startswith(MANAGED_PREFIX):
                add(user, [active.decode()])
            add(user, [n for n in names if n.startswith(MANAGED_PREFIX)])
            after = domain_owner(domain, AFTER)
            add(after, self._names(txn, after))
        return out

    def domain_chain(self, domain: str) -> list[tuple[str, str, str]]:
        """The domain's before then after scripts: what runs on a
        submission from one of its users."""
        out: list[tuple[str, str, str]] = []
        with self.env.read() as txn:
            if txn.stat(self._scripts)["entries"] == 0:
                return out
            for owner in (domain_owner(domain, BEFORE), domain_owner(domain, AFTER)):
                for name in self._names(txn, owner):
                    value = txn.get(_key(owner, name), db=self._scripts)
                    if value is not None:
                        out.append((owner, name, value.decode()))
        return out

    # -- writes --------------------------------------------------------------------------
    def put(self, owner: str, name: str, text: str) -> Any:
        data = text.encode()
        if len(data) > self.max_script_size:
            raise SieveQuotaError("QUOTA/MAXSIZE", f"Script is larger than {self.max_script_size} octets")

        def put(txn: Any) -> None:
            refused = self._count_check(txn, owner, name)
            if refused is not None:
                raise refused
            txn.put(_key(owner, name), data, db=self._scripts)

        return self._write(put)

    def remove(self, owner: str, name: str) -> Any:
        def remove(txn: Any) -> None:
            if txn.get(_key(owner, name), db=self._scripts) is None:
                raise NoSuchScript(name)
            active = txn.get(owner.encode(), db=self._active)
            if active is not None and active.decode() == name:
                raise ScriptActive(name)
            txn.delete(_key(owner, name), db=self._scripts)

        return self._write(remove)

    def remove_any(self, owner: str, name: str) -> Any:
        """Remove even the active script (xmailctl, managed scripts)."""
        def remove(txn: Any) -> bool:
            active = txn.get(owner.encode(), db=self._active)
            if active is not None and active.decode() == name:
                txn.delete(owner.encode(), db=self._active)
            return bool(txn.delete(_key(owner, name), db=self._scripts))

        return self._write(remove)

    def remove_owner(self, owner: str) -> Any:
        """Remove every script of `owner` and its active mark (a removed
        user: a later user of the same address must not inherit a forward);
        -> the names removed."""
        def remove(txn: Any) -> list[str]:
            names = self._names(txn, owner)
            for name in names:
                txn.delete(_key(owner, name), db=self._scripts)
            txn.delete(owner.encode(), db=self._active)
            return names

        return self._write(remove)

    def rename(self, owner: str, old: str, new: str) -> Any:
        def rename(txn: Any) -> None:
            value = txn.get(_key(owner, old), db=self._scripts)
            if value is None:
                raise NoSuchScript(old)
            if old == new:
                return
            if txn.get(_key(owner, new), db=self._scripts) is not None:
                raise ScriptExists(new)
            txn.put(_key(owner, new), value, db=self._scripts)
            txn.delete(_key(owner, old), db=self._scripts)
            active = txn.get(owner.encode(), db=self._active)
            if active is not None and active.decode() == old:
                txn.put(owner.encode(), new.encode(), db=self._active)

        return self._write(rename)

    def activate(self, owner: str, name: str | None) -> Any:
        def activate(txn: Any) -> None:
            if name is None:
                txn.delete(owner.encode(), db=self._active)
                return
            if txn.get(_key(owner, name), db=self._scripts) is None:
                raise NoSuchScript(name)
            txn.put(owner.encode(), name.encode(), db=self._active)

        return self._write(activate)
