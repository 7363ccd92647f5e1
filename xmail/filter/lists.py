# -*- test-case-name: tests.filter.test_lists -*-
"""Sender allow and block lists, per domain and per user (issue 17).

`xmailctl spam allow|block add|remove|list (--domain D | --user U) PATTERN`.
A pattern is an address (`bob@example.net`), a domain (`@example.net`:
that domain only) or a domain and its subdomains (`*.example.net`:
example.net and every name under it).

Precedence, for one recipient: user allow > user block > domain allow >
domain block (a user may take back what the domain blocks; the domain's
allow does not override the user's own block).  A blocked sender is
refused with `550 5.7.1` (at RCPT for the envelope sender; after DATA for
a From header author when every recipient blocks it, else that
recipient's copy is dropped and logged); an allowed sender skips spam
scoring, never virus scanning.

Stored in the shared LMDB environment, one named database
``filter.senders``: key ``scope NUL kind NUL pattern`` where scope is
``d:DOMAIN`` or ``u:ADDRESS`` and kind ``allow`` / ``block``; the value
is the time it was added.  A check is a handful of key lookups (one per
candidate pattern of each sender address): linear in the address length,
safe on the reactor.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

from xmail import addresses
from xmail.db.environment import IndexEnvironment, keys_with_prefix
from xmail.filter.interfaces import MX, Review, Transaction, Verdict
from xmail.filter.pipeline import IGNORE, Stage
from xmail.message import mailboxes

SENDERS_DB = "filter.senders"
ALLOW, BLOCK = "allow", "block"
KINDS = (ALLOW, BLOCK)
MAX_PATTERN = 320


class ListError(ValueError):
    """A bad pattern, scope or kind (the CLI prints it)."""


def normalize_pattern(pattern: str) -> str:
    """`Bob@Example.NET` -> `bob@example.net`, `@Example.net` ->
    `@example.net`, `*.Example.net` -> `*.example.net`; ListError else."""
    text = pattern.strip()
    if not text or len(text) > MAX_PATTERN or any(c in text for c in "\0\r\n \t"):
        raise ListError(f"invalid pattern {pattern!r}")
    try:
        if text.startswith("*."):
            return "*." + addresses.normalize_domain(text[2:])
        if text.startswith("@"):
            return "@" + addresses.normalize_domain(text[1:])
        if "@" in text:
            return addresses.normalize_address(text)
    except ValueError as e:
        raise ListError(f"invalid pattern {pattern!r}: {e}") from None
    raise ListError(f"invalid pattern {pattern!r}: use an address, @domain or *.domain")


def candidates(sender: str) -> list[str]:
    """Every pattern that matches an address: itself, @domain, and
    *.d for d = the domain and each parent (bob@a.b.c -> *.a.b.c, *.b.c, *.c)."""
    try:
        address = addresses.normalize_address(sender)
    except ValueError:
        return []
    domain = address.rpartition("@")[2]
    found = [address, "@" + domain]
    labels = domain.split(".")
    found += ["*." + ".".join(labels[i:]) for i in range(len(labels))]
    return found


def _key(scope: str, kind: str, pattern: str) -> bytes:
    return f"{scope}\0{kind}\0{pattern}".encode()


def scope_of(*, domain: str | None = None, user: str | None = None) -> str:
    if (domain is None) == (user is None):
        raise ListError("give exactly one of a domain or a user")
    try:
        if domain is not None:
            return "d:" + addresses.normalize_domain(domain)
        return "u:" + addresses.normalize_address(user or "")
    except ValueError as e:
        raise ListError(str(e)) from None


class SenderLists:
    def __init__(self, env: IndexEnvironment):
        self.env = env
        self._db = env.db(SENDERS_DB)

    # -- admin (xmailctl; synchronous writes, never on a daemon's reactor) ---------------
    def add(self, scope: str, kind: str, pattern: str) -> str:
        kind = _kind(kind)
        pattern = normalize_pattern(pattern)
        key = _key(scope, kind, pattern)
        self.env.write_sync(lambda txn: txn.put(key, str(time.time()).encode(), db=self._db))
        return pattern

    def remove(self, scope: str, kind: str, pattern: str) -> bool:
        key = _key(scope, _kind(kind), normalize_pattern(pattern))
        return bool(self.env.write_sync(lambda txn: txn.delete(key, db=self._db)))

    def list(self, scope: str, kind: str) -> list[str]:
        prefix = f"{scope}\0{_kind(kind)}\0".encode()
        with self.env.read() as txn:
            return [key[len(prefix):].decode() for key in keys_with_prefix(txn, self._db, prefix)]

    # -- checks (short reads) ----------------------------------------------------------------
    def decision(self, senders: Iterable[str], user: str) -> str | None:
        """ALLOW, BLOCK or None for mail from any of `senders` to `user`."""
        with self.env.read() as txn:
            if txn.stat(self._db)["entries"] == 0:
                return None  # no lists anywhere (most servers): nothing to match
            patterns = [p for sender in senders if sender for p in candidates(sender)]
            if not patterns:
                return None
            domain = user.rpartition("@")[2]
            levels = ((f"u:{user}", ALLOW), (f"u:{user}", BLOCK), (f"d:{domain}", ALLOW),
                      (f"d:{domain}", BLOCK))
            for scope, kind in levels:
                if any(txn.get(_key(scope, kind, p), db=self._db) is not None for p in patterns):
                    return kind
        return None


def _kind(kind: str) -> str:
    if kind not in KINDS:
        raise ListError(f"unknown list {kind!r}: allow or block")
    return kind


BLOCKED = "Sender is blocked by the recipient's policy"


def blocked_verdict(stage: str = "lists") -> Verdict:
    return Verdict.reject(BLOCKED, code=550, status="5.7.1", stage=stage)


def sender_check(lists: SenderLists) -> Any:
    """The pipeline's RCPT-time check: the envelope sender on a block list."""

    def check(mail_from: str, user: str) -> Verdict | None:
        return blocked_verdict() if lists.decision([mail_from], user) == BLOCK else None

    return check


class SenderListStage(Stage):
    """The lists stage (MX): the From header authors and the envelope
    sender against each recipient's lists.  Runs first, so an allowed
    sender is known to the spam stage (`facts["allowed"]`, True when every
    local recipient allows; `facts["allowed_users"]` per user)."""

    name = "lists"
    on_failure = IGNORE

    def __init__(self, lists: SenderLists):
        self.lists = lists

    def applies(self, transaction: Transaction) -> bool:
        return transaction.mode == MX

    def review(self, review: Review) -> Any:
        tx = review.transaction
        senders = [tx.mail_from] + [a for value in review.fields("from") for a in mailboxes(value)][:10]
        users = tx.local_users
        allowed: list[str] = []
        blocked: list[str] = []
        for user in users:
            decision = self.lists.decision(senders, user)
            if decision == ALLOW:
                allowed.append(user)
            elif decision == BLOCK:
                blocked.append(user)
        if users and len(blocked) == len(users) and not any(r.user is None for r in tx.recipients):
            review.decide(blocked_verdict(self.name))
            return None
        for user in blocked:
            review.discard(user, "sender blocked")
        review.facts["allowed_users"] = set(allowed)
        review.facts["allowed"] = bool(users) and len(allowed) == len(users)
        return None
