# -*- test-case-name: tests.filter.authcheck.test_dmarc -*-
"""DMARC (RFC 7489): policy discovery, identifier alignment, the policy.

Discovery asks `_dmarc.<From domain>` and, when that has no DMARC record,
`_dmarc.<organizational domain>` (§6.6.3), the organizational domain
taken from the Public Suffix List (`publicsuffixlist`, §3.2).  The lookup
is asynchronous on the reactor (twisted.names through the DnsBridge);
evaluation is pure.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import getaddresses
from typing import Any

from publicsuffixlist import PublicSuffixList
from twisted.internet import defer
from twisted.names import dns

from xmail.filter.authcheck.dkim import DkimResult
from xmail.filter.authcheck.dnsbridge import DnsBridge, DnsTemporary, OversizeRecord
from xmail.filter.authcheck.spf import SpfResult

NONE, QUARANTINE, REJECT = "none", "quarantine", "reject"
_POLICIES = (NONE, QUARANTINE, REJECT)
MAX_FROM_CHARS = 2048  # of the From field parsed; a longer one is not an author we can check
MAX_RECORD_TAGS = 32

_psl: PublicSuffixList | None = None
_psl_lock = threading.Lock()


def organizational_domain(domain: str) -> str:
    """§3.2: the registrable domain (one label below the public suffix);
    the domain itself when it is a public suffix or unknown to the list."""
    global _psl
    with _psl_lock:
        if _psl is None:
            _psl = PublicSuffixList()  # reads the list once (~50 ms)
        psl = _psl
    return psl.privatesuffix(domain) or domain


@dataclass(frozen=True, slots=True)
class DmarcRecord:
    """§6.3 tags we act on (rua/ruf reporting is not implemented)."""

    p: str
    sp: str
    adkim: str = "r"
    aspf: str = "r"
    pct: int = 100


@dataclass(frozen=True, slots=True)
class DmarcResult:
    result: str          # none pass fail temperror permerror (RFC 8601 §2.7.1, RFC 7489 §11.2)
    from_domain: str     # header.from ("" when there is no single author domain)
    policy: str = NONE   # the published policy that applies (p, or sp for a subdomain)
    disposition: str = NONE  # what we do: none / quarantine / reject (after pct)
    reason: str = ""


def author_domain(header_from: str | None) -> tuple[str, str]:
    """(domain, problem): the single RFC5322.From domain (§6.6.1)."""
    if header_from is None:
        return "", "no From field"
    if len(header_from) > MAX_FROM_CHARS:
        return "", "From field too long"
    addresses = [a for _name, a in getaddresses([header_from]) if a]
    if len(addresses) != 1:
        # §6.6.1 leaves several authors to local policy: no single domain
        # to evaluate, so a permerror (never a pass).
        return "", f"From field has {len(addresses)} addresses"
    local, at, domain = addresses[0].rpartition("@")
    domain = domain.strip().rstrip(".").lower()
    if not at or not local or not domain or not _is_hostname(domain):
        return "", "From address has no usable domain"
    return domain, ""


def _is_hostname(domain: str) -> bool:
    labels = domain.split(".")
    return len(domain) <= 253 and len(labels) >= 2 and all(
        0 < len(label) <= 63 and all(c in _HOST_CHARS for c in label) for label in labels)


_HOST_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-_")


def parse_record(text: bytes) -> DmarcRecord | None:
    """§6.4 tag-value list; None unless it starts with v=DMARC1.  A bad p
    with an otherwise valid record counts as p=none (§6.6.3: a record
    with a syntax error in p= is treated as if p=none when rua is valid;
    we treat every such record so, never stricter than published)."""
    try:
        value = text.decode("ascii")
    except UnicodeDecodeError:
        return None
    tags: dict[str, str] = {}
    for part in value.split(";")[:MAX_RECORD_TAGS]:
        key, eq, val = part.partition("=")
        if eq:
            tags.setdefault(key.strip().lower(), val.strip())
    first = value.split(";", 1)[0].replace(" ", "").lower()
    if first != "v=dmarc1":  # §6.4: v must be the first tag
        return None
    p = tags.get("p", "").lower()
    if p not in _POLICIES:
        p = NONE
    sp = tags.get("sp", "").lower()
    if sp not in _POLICIES:
        sp = p  # §6.3: sp absent -> p applies to subdomains
    try:
        pct = min(max(int(tags.get("pct", "100")), 0), 100)
    except ValueError:
        pct = 100
    adkim = "s" if tags.get("adkim", "r").lower() == "s" else "r"
    aspf = "s" if tags.get("aspf", "r").lower() == "s" else "r"
    return DmarcRecord(p, sp, adkim, aspf, pct)


@defer.inlineCallbacks
def discover(bridge: DnsBridge, domain: str) -> Any:
    """§6.6.3 policy discovery on the reactor -> (record | None, found at
    the organizational domain?); DnsTemporary / OversizeRecord raised."""
    record = yield _lookup(bridge, domain)
    if record is not None:
        return record, False
    org = organizational_domain(domain)
    if org != domain:
        record = yield _lookup(bridge, org)
        if record is not None:
            return record, True
    return None, False


@defer.inlineCallbacks
def _lookup(bridge: DnsBridge, domain: str) -> Any:
    answers = yield bridge.ask_async(f"_dmarc.{domain}", dns.TXT)
    records = [r for r in (parse_record(b"".join(a.data)) for a in answers if a.type == dns.TXT)
               if r is not None]
    # §6.6.3 step 5: several DMARC records -> none applies
    return records[0] if len(records) == 1 else None


def aligned(identifier: str, author: str, mode: str) -> bool:
    """§3.1.1 / §3.1.2: strict = the same domain; relaxed = the same
    organizational domain."""
    if not identifier:
        return False
    if identifier == author:
        return True
    return mode == "r" and organizational_domain(identifier) == organizational_domain(author)


def evaluate(author: str, found: Any, spf: SpfResult | None, dkim: list[DkimResult],
             chance: Callable[[], float] = random.random) -> DmarcResult:
    """§6.6.2 / §6.6.4: pass when an aligned identifier passed; otherwise
    the policy (sp when the record was found at the organizational
    domain for a subdomain author), sampled by pct."""
    record, at_org = found
    if record is None:
        return DmarcResult(NONE, author, reason="no DMARC record")
    spf_ok = spf is not None and spf.result == "pass" and aligned(spf.domain, author, record.aspf)
    dkim_ok = any(d.result == "pass" and aligned(d.domain, author, record.adkim) for d in dkim)
    policy = record.sp if at_org else record.p
    if spf_ok or dkim_ok:
        which = " and ".join(n for n, ok in (("spf", spf_ok), ("dkim", dkim_ok)) if ok)
        return DmarcResult("pass", author, policy, NONE, "aligned " + which)
    disposition = policy
    # §6.6.4: a message not sampled gets the next less strict policy
    if policy != NONE and chance() * 100 >= record.pct:
        disposition = QUARANTINE if policy == REJECT else NONE
    return DmarcResult("fail", author, policy, disposition, "no aligned identifier passed")


@dataclass(frozen=True, slots=True)
class Policy:
    """What discovery found for the author domain: a record (or None), and
    whether it came from the organizational domain; or, in `final`, the
    result when there is nothing to evaluate (permerror, temperror)."""

    author: str
    found: tuple[DmarcRecord | None, bool] = (None, False)
    final: DmarcResult | None = None


@defer.inlineCallbacks
def find_policy(bridge: DnsBridge, header_from: str | None) -> Any:
    """-> Deferred[Policy]; never fails.  Runs on the reactor, while SPF
    and DKIM are evaluated in the worker pool."""
    author, problem = author_domain(header_from)
    if problem:
        return Policy(author, final=DmarcResult("permerror", "", reason=problem))
    try:
        found = yield discover(bridge, author)
    except DnsTemporary as e:
        return Policy(author, final=DmarcResult("temperror", author, reason=str(e)))
    except OversizeRecord as e:
        return Policy(author, final=DmarcResult("permerror", author, reason=str(e)))
    return Policy(author, found)


def check_dmarc(policy: Policy, spf: SpfResult | None, dkim: list[DkimResult],
                chance: Callable[[], float] = random.random) -> DmarcResult:
    """The DMARC result once SPF and DKIM are known."""
    if policy.final is not None:
        return policy.final
    return evaluate(policy.author, policy.found, spf, dkim, chance)
