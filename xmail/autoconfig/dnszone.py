# -*- test-case-name: tests.autoconfig.test_dnszone,tests.autoconfig.test_managesieve,tests.test_cli_dns -*-
"""The DNS records an operator adds for a hosted domain (`xmailctl dns`):
MX, SPF, DKIM, DMARC, the autoconfig names, the RFC 6186 mail SRV records
and ManageSieve's `_sieve._tcp` (RFC 5804 §1.8), as a zone-file fragment
(RFC 1035 §5 master file syntax), and the same records as data for
`xmailctl dns check` (xmail.autoconfig.dnscheck)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from xmail.autoconfig.model import ADVERTISED_LISTENERS, ClientSettings

# RFC 6186 §3.4 compares priorities across _imap/_imaps/_pop3/_pop3s, and
# RFC 8314 §5.1 asks that implicit TLS be preferred (lower number): IMAP over
# TLS first, then IMAP STARTTLS, then POP3; _submissions before _submission.
SRV_PRIORITY = {"imaps": 0, "imap": 10, "pop3s": 20, "pop3": 30, "submissions": 0, "submission": 10}
# RFC 5804 §1.8: ManageSieve clients look up _sieve._tcp (one service: no
# priority to compare).
SIEVE_SRV = "_sieve._tcp"
TXT_STRING_MAX = 255  # RFC 1035 §3.3.14: a TXT record is <character-string>s of at most 255 octets


@dataclass(frozen=True, slots=True)
class DkimKey:
    """A DKIM selector to publish: `text` is its TXT record text
    ("v=DKIM1; k=rsa; p=..."), `state` active or retired."""

    selector: str
    state: str
    text: str


@dataclass(frozen=True, slots=True)
class Record:
    """One record to publish.  `name` is absolute (trailing dot); `data`
    is in master-file syntax; `value` is what a lookup should find, for
    `dns check`: (priority, host) for MX, the joined text for TXT, the
    target for CNAME, (priority, weight, port, target) for SRV."""

    name: str
    rtype: str
    data: str
    value: object
    what: str  # what it is for, in a check's report: "MX", "SPF", "DKIM x2026...", "DMARC", ...


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def txt_strings(text: str) -> list[str]:
    """Text cut into TXT character-strings of at most 255 octets (a 2048-bit
    RSA key does not fit one; RFC 6376 §3.6.2.2: a verifier joins them).
    The texts here are ASCII, so octets are characters."""
    return [text[i:i + TXT_STRING_MAX] for i in range(0, len(text), TXT_STRING_MAX)] or [""]


def txt_data(text: str) -> str:
    """A TXT record's strings in master-file syntax: each quoted (RFC 1035
    §5.1: `"` and `\\` escaped)."""
    return " ".join('"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"' for s in txt_strings(text))


def spf_record(domain: str) -> str:
    # RFC 7208: only the MX hosts send for the domain.
    return "v=spf1 mx -all"


def dmarc_record(domain: str) -> str:
    """RFC 7489 §6.3: quarantine what fails, aggregate reports to postmaster
    (RFC 5321 §4.5.1: every domain has one)."""
    return f"v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"


def records(domain: str, settings: ClientSettings, dkim: Iterable[DkimKey] = ()) -> list[Record]:
    """Every record `domain` (validated) should publish, in print order."""
    host = _fqdn(settings.hostname)
    origin = _fqdn(domain)
    out = [Record(origin, "MX", f"10 {host}", (10, host.lower()), "MX")]
    spf = spf_record(domain)
    out.append(Record(origin, "TXT", txt_data(spf), spf, "SPF"))
    for key in dkim:
        # RFC 6376 §3.6.2.1: the key of selector s for domain d is at s._domainkey.d.
        out.append(Record(f"{key.selector}._domainkey.{origin}", "TXT", txt_data(key.text), key.text,
                          f"DKIM {key.selector} ({key.state})"))
    dmarc = dmarc_record(domain)
    out.append(Record(f"_dmarc.{origin}", "TXT", txt_data(dmarc), dmarc, "DMARC"))
    # Thunderbird asks autoconfig.<domain>, Outlook autodiscover.<domain>
    # (over HTTP port 80 / HTTPS 443: listen there or proxy to [listen] http).
    out.append(Record(f"autoconfig.{origin}", "CNAME", host, host.lower(), "autoconfig"))
    out.append(Record(f"autodiscover.{origin}", "CNAME", host, host.lower(), "autodiscover"))
    by_listener = {s.listener: s for s in settings.servers}
    for listener, _protocol, _security in ADVERTISED_LISTENERS:
        name = f"_{listener}._tcp.{origin}"
        server = by_listener.get(listener)
        if server is None:
            # RFC 6186 §4 / RFC 2782: target "." says "not offered here".
            out.append(Record(name, "SRV", "0 0 0 .", (0, 0, 0, "."), f"SRV {listener}"))
        else:
            target = _fqdn(server.host)
            out.append(Record(name, "SRV", f"{SRV_PRIORITY[listener]} 1 {server.port} {target}",
                              (SRV_PRIORITY[listener], 1, server.port, target.lower()), f"SRV {listener}"))
    sieve = settings.managesieve
    if sieve is not None:
        # Only when offered: RFC 5804 defines no "not offered here" record.
        target = _fqdn(sieve.host)
        out.append(Record(f"{SIEVE_SRV}.{origin}", "SRV", f"0 1 {sieve.port} {target}",
                          (0, 1, sieve.port, target.lower()), "SRV sieve"))
    return out


def zone_fragment(domain: str, settings: ClientSettings, ttl: int = 3600,
                  dkim: Iterable[DkimKey] = ()) -> str:
    """Zone text for `domain` (validated), one record a line."""
    dkim = list(dkim)
    host = _fqdn(settings.hostname)
    lines = [f"; xmail: DNS records for {domain}"]
    if "." not in settings.hostname:
        lines.append(f"; WARNING: {settings.hostname!r} is not a public host name: set [server] hostname"
                     " (or [autoconfig] host)")
    lines.append(f"; {host} itself needs A/AAAA records with the server's public addresses, e.g.")
    lines.append(f";{host} {ttl} IN A 192.0.2.25")
    if not dkim:
        lines.append(f"; no DKIM key: create one with `xmailctl dkim add {domain}`")
    for key in dkim:
        if key.state != "active":
            lines.append(f"; DKIM selector {key.selector} is {key.state}: keep it published until "
                         f"`xmailctl dkim remove {domain} {key.selector}`")
    rows = records(domain, settings, dkim)
    width = max(len(r.name) for r in rows)
    for r in rows:
        lines.append(f"{r.name:<{width}} {ttl} IN {r.rtype:<5} {r.data}")
    return "\n".join(lines) + "\n"
