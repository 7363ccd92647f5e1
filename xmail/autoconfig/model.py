# -*- test-case-name: tests.autoconfig.test_model -*-
"""The servers a mail client should use, and the addresses it may ask about.

Every document (Thunderbird, Outlook, Apple, DNS, the setup page) is built
from one ClientSettings, so they can never disagree with each other.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from xmail.config import PublicEndpoint, Settings


class AddressError(ValueError):
    """Not an address the auto-configuration will put in a document."""


# RFC 5322 §3.2.3 atext, dot-atom only: a quoted local part ("a b"@x) is
# valid mail syntax but nobody logs in with one, and refusing it keeps
# quotes, spaces, backslashes and control characters out of every document.
_LOCAL_PART = re.compile(r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+)*")
# RFC 1035 §2.3.1 labels (letters, digits, hyphen; IDNs arrive as punycode).
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")


@dataclass(frozen=True, slots=True)
class Address:
    local: str
    domain: str

    def __str__(self) -> str:
        return f"{self.local}@{self.domain}"


def parse_domain(text: str) -> str:
    """A lowercase DNS name, or AddressError; a trailing dot is dropped."""
    domain = text.strip().lower().removesuffix(".")
    # RFC 1035 §2.3.4: 255 octets on the wire, 253 as text.
    if not domain or len(domain) > 253:
        raise AddressError("not a domain name")
    labels = domain.split(".")
    if len(labels) < 2 or not all(_LABEL.fullmatch(label) for label in labels):
        raise AddressError("not a domain name")
    if labels[-1].isdigit():  # RFC 3696 §2: an all-numeric TLD is an IPv4 address
        raise AddressError("not a domain name")
    return domain


def parse_address(text: str) -> Address:
    """A lowercase local@domain or AddressError (nothing else gets through)."""
    # RFC 5321 §4.5.3.1.1-3: local part 64 octets, path 256.
    if not isinstance(text, str) or len(text) > 254:
        raise AddressError("address too long")
    local, sep, domain = text.strip().rpartition("@")
    if not sep or len(local) > 64 or not _LOCAL_PART.fullmatch(local):
        raise AddressError("not a mail address")
    return Address(local.lower(), parse_domain(domain))


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


def client_settings(settings: Settings, bound_ports: Mapping[str, int] | None = None) -> ClientSettings:
    """The servers to advertise.

    For each listener the port is, in order: [autoconfig.<name>] port, the
    port the listener is bound to (bound_ports: listener name -> port, known
    only inside the running server), the port in its first endpoint
    description.  A listener with no endpoint and no [autoconfig] port, or
    whose port stays unknown (or 0), is not advertised.
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
    return ClientSettings(hostname=default_host, servers=tuple(servers))
