# -*- test-case-name: tests.filter.authcheck.test_spf -*-
"""SPF (RFC 7208) of the MAIL FROM identity, or of HELO for the null
reverse-path (§2.3, §2.4), evaluated by pyspf in a worker thread.

pyspf asks DNS through its module-level `DNSLookup`; it is replaced once,
for the whole process, by `_lookup`, which finds the calling thread's
DnsBridge (a thread-local set around each evaluation) and so asks
twisted.names on the reactor.  A thread without a bridge gets a
temperror, never a blocking lookup.  pyspf itself enforces the processing
limits: 10 DNS-querying terms (§4.6.4, strict mode raises PermError),
2 void lookups (§4.6.4), include/redirect recursion (loops end there).
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass
from typing import Any

import spf as pyspf
from twisted.names import dns

from xmail.filter.authcheck.dnsbridge import DnsBridge, DnsTemporary, OversizeRecord

MAILFROM = "mailfrom"
HELO = "helo"
_QTYPES = {"A": dns.A, "AAAA": dns.AAAA, "MX": dns.MX, "PTR": dns.PTR, "TXT": dns.TXT}
_NAMES = {v: k for k, v in _QTYPES.items()} | {dns.CNAME: "CNAME"}
MAX_IDENTITY = 320  # RFC 5321 §4.5.3.1.3 path length: a longer identity is not looked up

_local = threading.local()


@dataclass(frozen=True, slots=True)
class SpfResult:
    """RFC 7208 §2.6 result of one identity."""

    result: str       # none neutral pass fail softfail temperror permerror
    identity: str     # MAILFROM or HELO
    value: str        # the MAIL FROM address, or the HELO name
    domain: str       # the domain checked (DMARC aligns with it)
    reason: str = ""


def _lookup(name: str, qtype: str, strict: Any = True, timeout: float = 20) -> list[Any]:
    """pyspf's DNSLookup: [((name, type), value), ...] from the bridge."""
    bridge: DnsBridge | None = getattr(_local, "bridge", None)
    if bridge is None:
        raise pyspf.TempError("DNS: no resolver for this thread (xmail answers pyspf's DNS)")
    wanted = _QTYPES.get(qtype)
    if wanted is None:
        return []  # type 99 (SPF) is only asked in harsh mode; we never ask it
    try:
        answers = bridge.ask(name, wanted)
    except DnsTemporary as e:
        raise pyspf.TempError(f"DNS {e}") from None
    except OversizeRecord as e:
        raise pyspf.PermError(str(e)) from None
    out: list[Any] = []
    for a in answers:
        kind = _NAMES.get(a.type)
        if kind == "TXT":
            out.append(((a.name, kind), list(a.data)))
        elif kind is not None:
            out.append(((a.name, kind), a.data))
    return out


pyspf.DNSLookup = _lookup  # process-wide: pyspf never uses its own resolver


def check_spf(bridge: DnsBridge, client_ip: str, mail_from: str, helo: str,
              receiver: str = "") -> SpfResult:
    """Evaluate SPF (blocking: run it in the worker pool)."""
    if mail_from:
        identity, value = MAILFROM, mail_from
        domain = mail_from.rpartition("@")[2] if "@" in mail_from else helo
    else:
        identity, value, domain = HELO, helo, helo
    domain = domain.lower().rstrip(".")
    if len(value) > MAX_IDENTITY or not domain:
        return SpfResult("none", identity, value, domain, "no usable identity")
    try:
        ipaddress.ip_address(client_ip)
    except ValueError:
        return SpfResult("permerror", identity, value, domain, "client address unknown")
    _local.bridge = bridge
    try:
        query = pyspf.query(i=client_ip, s=mail_from, h=helo, receiver=receiver or None,
                            strict=True, timeout=bridge.query_timeout)
        result, _code, explanation = query.check()
    except (pyspf.TempError, DnsTemporary) as e:
        result, explanation = "temperror", str(e)
    except pyspf.PermError as e:
        result, explanation = "permerror", str(e)
    except Exception as e:  # pyspf on input it did not expect: could not tell
        result, explanation = "temperror", f"SPF evaluation failed: {type(e).__name__}"
    finally:
        _local.bridge = None
    return SpfResult(result, identity, value, domain, explanation)
