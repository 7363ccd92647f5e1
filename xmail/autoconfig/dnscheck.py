# -*- test-case-name: tests.test_cli_dns -*-
"""`xmailctl dns check DOMAIN`: what DNS publishes, against what
`xmailctl dns DOMAIN` asks for (xmail.autoconfig.dnszone.records).

Every lookup goes through a twisted.names IResolver made by
`xmail.dns.make_resolver(settings.dns)`, so `[dns] servers` decides who is
asked (tests: a loopback server).  Each record is one of:

- ok: the expected value is among the answers;
- missing: no record of that kind (NXDOMAIN, no data, no `v=spf1` /
  `v=DMARC1` TXT among the answers);
- different: records exist, none with the expected value (both printed);
- failed: the lookup itself failed (timeout, SERVFAIL): cannot tell.

Whatever the server answers is bounded before it is compared or printed:
at most MAX_ANSWERS records per name, at most MAX_TEXT characters shown.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer
from twisted.names import dns, error

from xmail.autoconfig.dnszone import Record

OK = "ok"
MISSING = "missing"
DIFFERENT = "different"
FAILED = "failed"
MAX_ANSWERS = 20
MAX_TEXT = 600


@dataclass(frozen=True, slots=True)
class Finding:
    record: Record
    status: str
    found: tuple[str, ...]  # what was found, printable, for "different"
    why: str = ""          # for "failed"


def _text(value: Any) -> str:
    if isinstance(value, tuple):
        return " ".join(str(v) for v in value)
    return str(value)


def shown(text: str) -> str:
    """Answer text as printed: control characters escaped, cut at MAX_TEXT."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text[:MAX_TEXT])
    return text + ("..." if len(text) >= MAX_TEXT else "")


def _tags(text: str) -> dict[str, str]:
    """A DKIM/DMARC tag list (RFC 6376 §3.2) as a dict, white space removed;
    the first of a repeated tag counts."""
    out: dict[str, str] = {}
    for part in text.split(";")[:64]:
        name, eq, value = part.partition("=")
        if eq:
            out.setdefault("".join(name.split()).lower(), "".join(value.split()))
    return out


def _same_txt(record: Record, found: str) -> bool:
    expected = str(record.value)
    if record.what.startswith("DKIM"):
        # The key is what matters: k= (default rsa, RFC 6376 §3.6.1) and p=.
        want, got = _tags(expected), _tags(found)
        return (want.get("k", "rsa"), want.get("p")) == (got.get("k", "rsa"), got.get("p"))
    if record.what == "DMARC":
        return _tags(expected) == _tags(found)
    return " ".join(expected.lower().split()) == " ".join(found.lower().split())


def _relevant_txt(record: Record, texts: list[str]) -> list[str]:
    """The TXT answers that are this kind of record: SPF and DMARC share
    their names with other TXT records (RFC 7208 §4.5, RFC 7489 §6.6.3)."""
    if record.what == "SPF":
        return [t for t in texts if t.lower().startswith("v=spf1")]
    if record.what == "DMARC":
        return [t for t in texts if t.replace(" ", "").upper().startswith("V=DMARC1")]
    return texts


def _answers(result: Any, rtype: int) -> list[Any]:
    answers, _authority, _additional = result
    return [a.payload for a in answers if a.type == rtype][:MAX_ANSWERS]


@defer.inlineCallbacks
def check_record(resolver: Any, record: Record) -> Any:
    """-> Deferred[Finding] for one record; never fails."""
    name = record.name.rstrip(".")
    try:
        if record.rtype == "MX":
            found_values = [(p.preference, str(p.name).lower().rstrip(".") + ".")
                            for p in _answers((yield resolver.lookupMailExchange(name)), dns.MX)]
            found = [_text(v) for v in found_values]
            matched = record.value in found_values
        elif record.rtype == "TXT":
            texts = [b"".join(p.data).decode("utf-8", "replace")
                     for p in _answers((yield resolver.lookupText(name)), dns.TXT)]
            found = _relevant_txt(record, texts)
            matched = any(_same_txt(record, t) for t in found)
        elif record.rtype == "CNAME":
            found = [str(p.name).lower().rstrip(".") + "."
                     for p in _answers((yield resolver.lookupCanonicalName(name)), dns.CNAME)]
            matched = record.value in found
        elif record.rtype == "SRV":
            values = [(p.priority, p.weight, p.port, str(p.target).lower().rstrip(".") + ".")
                      for p in _answers((yield resolver.lookupService(name)), dns.SRV)]
            found = [_text(v) for v in values]
            matched = record.value in values
        else:  # pragma: no cover - records() makes no other type
            raise ValueError(record.rtype)
    except (error.DNSNameError, error.AuthoritativeDomainError):
        return Finding(record, MISSING, ())  # NXDOMAIN
    except (error.DNSQueryTimeoutError, defer.TimeoutError):
        return Finding(record, FAILED, (), why="no answer (timed out)")
    except error.DNSServerError:  # (a DomainError too: before the catch-all, not with NXDOMAIN)
        return Finding(record, FAILED, (), why="server failure (SERVFAIL)")
    except Exception as e:  # REFUSED, FORMERR, garbage: cannot tell
        return Finding(record, FAILED, (), why=shown(f"{type(e).__name__}: {e}"))
    if matched:
        return Finding(record, OK, ())
    return Finding(record, DIFFERENT if found else MISSING, tuple(shown(f) for f in found))


def check(resolver: Any, records: Iterable[Record]) -> defer.Deferred:
    """-> Deferred[list[Finding]], in the order of `records`; the lookups run
    at once (a dozen small queries)."""
    return defer.gatherResults([check_record(resolver, r) for r in records])


def report_line(finding: Finding) -> tuple[str, ...]:
    """The fields of one report line: status, what, name, type, expected, found."""
    r = finding.record
    expected = _text(r.value)
    if finding.status == FAILED:
        found = f"lookup failed: {finding.why}"
    else:
        found = " | ".join(finding.found) if finding.found else "-"
    return (finding.status, r.what, r.name, r.rtype, expected, found)
