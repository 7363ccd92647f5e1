# -*- test-case-name: tests.autoconfig.test_model,tests.autoconfig.test_managesieve -*-
"""The servers a mail client should use, and the addresses it may ask about.

Every document (Thunderbird, Outlook, Apple, DNS, the setup page) is built
from one ClientSettings, so they can never disagree with each other.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass

from xmail import addresses
from xmail.config import PublicEndpoint, Settings


class AddressError(ValueError):
    """Not an address the auto-configuration will put in a document."""


@dataclass(frozen=True, slots=True)
class Address:
    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"


def parse_domain(text: str) -> str:
    """A lowercase DNS name (xmail.addresses' rule, IDNs as A-labels) with at
    least two labels, or AddressError; a trailing dot is dropped."""
    try:
        domain = addresses.normalize_domain(text)
    except addresses.AddressError:
        raise AddressError("not a domain name") from None
    if "." not in domain:
        raise AddressError("not a domain name")
    return domain


def parse_address(text: str) -> Address:
    """A lowercase local@domain or AddressError (nothing else gets through)."""
    try:
        local, domain = addresses.split_address(text)
    except addresses.AddressError:
        raise AddressError("not a mail address") from None
    return Address(local, parse_domain(domain))


def domain_from_host(host: str) -> list[str]:
    """Domains a Host header may stand for, most specific first:
    autoconfig.example.com -> [autoconfig.example.com, example.com]."""
    name = host.strip()
    if name.startswith("["):  # an IPv6 literal names no domain
        return []
    name = name.rsplit(":", 1)[0] if name.count(":") == 1 else name
    try:
        domain = parse_domain(name)
    except AddressError:
        return []
    candidates = [domain]
    parent = domain.partition(".")[2]
    if "." in parent:
        candidates.append(parent)
    return candidates


# --- servers ------------------------------------------------------------------

IMAP, POP3, SMTP = "imap", "pop3", "smtp"
SIEVE = "sieve"  # RFC 5804 ManageSieve: where users edit their filter rules
MANAGESIEVE = "managesieve"  # its [listen] name
# Implicit TLS (RFC 8314 §3) and STARTTLS on the cleartext port.
SSL, STARTTLS = "SSL", "STARTTLS"

# Listener name -> (protocol, security), in the order clients should prefer
# them: RFC 8314 §3.3/§4.1 prefers implicit TLS; IMAP is preferred over POP3
# because it keeps Sent and folders on the server.
ADVERTISED_LISTENERS: tuple[tuple[str, str, str], ...] = (
    ("imaps", IMAP, SSL),
    ("imap", IMAP, STARTTLS),
    ("pop3s", POP3, SSL),
    ("pop3", POP3, STARTTLS),
    ("submissions", SMTP, SSL),
    ("submission", SMTP, STARTTLS),
)


@dataclass(frozen=True, slots=True)
class ServerEndpoint:
    listener: str  # the [listen] name, e.g. "imaps"
    protocol: str  # IMAP, POP3 or SMTP
    host: str
    port: int
    security: str  # SSL or STARTTLS

    @property
    def implicit_tls(self) -> bool:
        return self.security == SSL


@dataclass(frozen=True, slots=True)
class ClientSettings:
    """Every advertised server, preferred first within each protocol."""

    hostname: str  # the host most servers are on (MX target, CNAME target)
    servers: tuple[ServerEndpoint, ...]
    # ManageSieve is no mail account setting: only the DNS SRV record
    # (RFC 5804 §1.8) and the setup page carry it.  None: not advertised.
    managesieve: ServerEndpoint | None = None

    def of(self, protocol: str) -> tuple[ServerEndpoint, ...]:
        return tuple(s for s in self.servers if s.protocol == protocol)

    def preferred(self, protocol: str) -> ServerEndpoint | None:
        servers = self.of(protocol)
        return servers[0] if servers else None

    @property
    def incoming(self) -> tuple[ServerEndpoint, ...]:
        return self.of(IMAP) + self.of(POP3)

    @property
    def outgoing(self) -> tuple[ServerEndpoint, ...]:
        return self.of(SMTP)


def _split_description(description: str) -> list[str]:
    # Twisted endpoint syntax: ':' separates arguments, '\:' is a literal colon.
    parts, current, chars = [], [], iter(description)
    for c in chars:
        if c == "\\":
            current.append(next(chars, ""))
        elif c == ":":
            parts.append("".join(current))
            current = []
        else:
            current.append(c)
    parts.append("".join(current))
    return parts


def endpoint_port(description: str) -> int | None:
    """The TCP port of a server endpoint description ("tcp:993",
    "ssl:port=465:privateKey=k.pem"), or None when it names none
    ("systemd:domain=INET:index=0", "unix:/run/x.sock")."""
    kind, *args = _split_description(description.strip())
    if kind.lower() not in ("tcp", "tcp6", "ssl"):
        return None
    positional = [a for a in args if "=" not in a]
    keywords = dict(a.split("=", 1) for a in args if "=" in a)
    value = keywords.get("port", positional[0] if positional else None)
    if value is None or not value.isdigit() or int(value) > 65535:
        return None
    return int(value)


def endpoint_loopback(description: str) -> bool:
    """Does a TCP endpoint description listen on a loopback interface only
    ("tcp:24190:interface=127.0.0.1")?  No interface means all of them."""
    kind, *args = _split_description(description.strip())
    keywords = dict(a.split("=", 1) for a in args if "=" in a)
    interface = keywords.get("interface", "").strip("[]")
    if kind.lower() not in ("tcp", "tcp6", "ssl") or not interface:
        return False
    if interface.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback
    except ValueError:
        return False


def _managesieve(settings: Settings, default_host: str) -> ServerEndpoint | None:
    """The ManageSieve listener to advertise: [autoconfig.managesieve] when
    it names a port, else the first [listen] managesieve endpoint that is
    reachable from outside with a fixed port.  A loopback-only listener
    (the embedded default, which a config without the key also gets) is
    not advertised: a DNS record or a setup page naming it would send
    clients to a port they cannot reach."""
    public: PublicEndpoint = settings.autoconfig.managesieve
    port = public.port or None
    if port is None:
        for description in settings.listen.managesieve:
            if not endpoint_loopback(description):
                port = endpoint_port(description)
                if port:
                    break
    if not port:
        return None
    # RFC 5804 §2.2: STARTTLS on the ManageSieve port; there is no implicit-TLS variant.
    return ServerEndpoint(MANAGESIEVE, SIEVE, public.host or default_host, port, STARTTLS)


def client_settings(settings: Settings, bound_ports: Mapping[str, int] | None = None) -> ClientSettings:
    """The servers to advertise.

    For each listener the port is, in order: [autoconfig.<name>] port, the
    port the listener is bound to (bound_ports: listener name -> port, known
    only inside the running server), the port in its first endpoint
    description.  A listener with no endpoint and no [autoconfig] port, or
    whose port stays unknown (or 0), is not advertised.  ManageSieve has
    its own rule (`_managesieve`).
    """
    bound_ports = bound_ports or {}
    autoconfig = settings.autoconfig
    default_host = autoconfig.host or settings.server.hostname
    servers = []
    for name, protocol, security in ADVERTISED_LISTENERS:
        public: PublicEndpoint = getattr(autoconfig, name)
        descriptions: tuple[str, ...] = getattr(settings.listen, name)
        port = public.port or bound_ports.get(name) or None
        if port is None and descriptions:
            port = endpoint_port(descriptions[0])
        if not port:
            continue
        servers.append(ServerEndpoint(name, protocol, public.host or default_host, port, security))
    return ClientSettings(hostname=default_host, servers=tuple(servers),
                          managesieve=_managesieve(settings, default_host))
