# -*- test-case-name: tests.autoconfig.test_dnszone -*-
"""The DNS records an operator adds for a hosted domain (`xmailctl dns`),
as a zone-file fragment (RFC 1035 §5 master file syntax)."""

from __future__ import annotations

from xmail.autoconfig.model import ADVERTISED_LISTENERS, ClientSettings

# RFC 6186 §3.4 compares priorities across _imap/_imaps/_pop3/_pop3s, and
# RFC 8314 §5.1 asks that implicit TLS be preferred (lower number): IMAP over
# TLS first, then IMAP STARTTLS, then POP3; _submissions before _submission.
SRV_PRIORITY = {"imaps": 0, "imap": 10, "pop3s": 20, "pop3": 30, "submissions": 0, "submission": 10}


def _fqdn(name: str) -> str:
    return name if name.endswith(".") else name + "."


def zone_fragment(domain: str, settings: ClientSettings, ttl: int = 3600) -> str:
    """Zone text for `domain` (validated), one record a line."""
    host = _fqdn(settings.hostname)
    origin = _fqdn(domain)
    rows: list[tuple[str, str, str]] = []
    lines = [f"; xmail: DNS records for {domain}"]
    if "." not in settings.hostname:
        lines.append(f"; WARNING: {settings.hostname!r} is not a public host name: set [server] hostname"
                     " (or [autoconfig] host)")
    lines.append(f"; {host} itself needs A/AAAA records with the server's public addresses, e.g.")
    lines.append(f";{host} {ttl} IN A 192.0.2.25")
    rows.append((origin, "MX", f"10 {host}"))
    # RFC 7208: only the MX hosts send for the domain.
    rows.append((origin, "TXT", '"v=spf1 mx -all"'))
    # Thunderbird asks autoconfig.<domain>, Outlook autodiscover.<domain>
    # (over HTTP port 80 / HTTPS 443: listen there or proxy to [listen] http).
    rows.append((f"autoconfig.{origin}", "CNAME", host))
    rows.append((f"autodiscover.{origin}", "CNAME", host))
    by_listener = {s.listener: s for s in settings.servers}
    for listener, _protocol, _security in ADVERTISED_LISTENERS:
        name = f"_{listener}._tcp.{origin}"
        server = by_listener.get(listener)
        if server is None:
            # RFC 6186 §4 / RFC 2782: target "." says "not offered here".
            rows.append((name, "SRV", "0 0 0 ."))
        else:
            rows.append((name, "SRV", f"{SRV_PRIORITY[listener]} 1 {server.port} {_fqdn(server.host)}"))
    width = max(len(name) for name, _, _ in rows)
    for name, rtype, data in rows:
        lines.append(f"{name:<{width}} {ttl} IN {rtype:<5} {data}")
    return "\n".join(lines) + "\n"
