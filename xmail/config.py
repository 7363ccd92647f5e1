# -*- test-case-name: tests.test_config -*-
"""TOML configuration -> typed, immutable settings.

Every key README's Configuration section lists has a default here, so an empty file (or no
file at all) is the embedded default: data in ./xmail-data and listeners on
127.0.0.1.  An unknown key or a value of the wrong type is a ConfigError that
names the key and the file.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from typing import Any, get_args, get_origin, get_type_hints


class ConfigError(Exception):
    """The configuration cannot be used; the message names the key and file."""


@dataclass(frozen=True)
class ServerSettings:
    hostname: str = "localhost"
    data_dir: str = "xmail-data"
    # Worker processes sharing the listeners and the data directory
    # (xmail.workers): 0 = the number of cores, 1 = one process.
    workers: int = 0
    # Plaintext AUTH/LOGIN before TLS is allowed from loopback clients
    # (tests, local webmail).  Switch off to test the non-loopback rule.
    loopback_plaintext_auth: bool = True
    # RFC 5321 §4.5.1: the account that receives postmaster@ of every hosted
    # domain (and <postmaster>) unless a user or alias postmaster@DOMAIN
    # exists; "" = postmaster@ of the host name's domain.
    postmaster: str = ""


@dataclass(frozen=True)
class SniCert:
    name: str
    cert: str
    key: str


@dataclass(frozen=True)
class TLSSettings:
    cert: str = ""  # empty: self-signed under data_dir/tls
    key: str = ""
    sni: tuple[SniCert, ...] = ()


_LOCAL = "interface=127.0.0.1"


@dataclass(frozen=True)
class ListenSettings:
    smtp: tuple[str, ...] = (f"tcp:2525:{_LOCAL}",)
    submission: tuple[str, ...] = (f"tcp:2587:{_LOCAL}",)
    submissions: tuple[str, ...] = (f"tcp:2465:{_LOCAL}",)
    pop3: tuple[str, ...] = (f"tcp:2110:{_LOCAL}",)
    pop3s: tuple[str, ...] = (f"tcp:2995:{_LOCAL}",)
    imap: tuple[str, ...] = (f"tcp:2143:{_LOCAL}",)
    imaps: tuple[str, ...] = (f"tcp:2993:{_LOCAL}",)
    http: tuple[str, ...] = (f"tcp:8080:{_LOCAL}",)
    # RFC 5804 ManageSieve (STARTTLS on the same port); production ["tcp:4190"].
    managesieve: tuple[str, ...] = (f"tcp:24190:{_LOCAL}",)


# The listener names, one per [listen] key (xmail.service.PROTOCOLS gives
# each its protocol).
LISTENERS: tuple[str, ...] = tuple(f.name for f in fields(ListenSettings))


@dataclass(frozen=True)
class LimitSettings:
    max_message_size: int = 41943040
    daily_send_limit: int = 1000
    recycle_days: int = 5
    quota_bytes: int = 0
    quota_messages: int = 50000
    max_recipients: int = 1000
    smtp_idle_timeout: int = 300
    pop3_idle_timeout: int = 600
    imap_idle_timeout: int = 1800
    # Slowloris (issue 16 #4), every protocol: a command (an IMAP command with
    # its literals, an SMTP line or DATA/BDAT body, a POP3 line, an HTTP
    # request) must arrive within command_timeout seconds of its first byte,
    # plus 1 s per 4 KiB it carries (xmail.limits.MIN_TRANSFER_RATE); and a
    # login must complete within login_timeout seconds of connecting (IMAP,
    # POP3, SMTP submission).  0 switches a deadline off.
    command_timeout: int = 60
    login_timeout: int = 60
    # Connection caps (issue #8); 0 = no cap.  Per client address and
    # protocol (imap and imaps count together), checked when accepting.
    max_connections_per_ip: int = 50
    # Logged-in sessions of one user per protocol.
    max_connections_per_user: int = 20
    # Login throttling (xmail.auth.throttle); a count of 0 switches its rule
    # off.  Per (client address, account):
    # after this many failures each attempt waits 2 s, 4 s, 8 s ...
    login_failures_before_delay: int = 3
    login_max_delay: int = 60  # seconds
    # ... and after this many it is refused outright for login_refusal_seconds.
    login_failures_before_refusal: int = 10
    login_refusal_seconds: int = 900
    # Per client address across accounts (password spraying).
    ip_login_failures_before_delay: int = 10
    ip_login_failures_before_refusal: int = 50
    # Per account across addresses: slows, never refuses, so the owner
    # can still log in from a new address during an attack.
    account_login_failures_before_delay: int = 20
    account_login_max_delay: int = 15  # seconds
    # Per user (issue 16): folders a user may have (the default ones
    # included) and names they may subscribe to; 0 = no cap.  Beyond them
    # CREATE / RENAME / SUBSCRIBE answer NO [LIMIT].
    max_folders: int = 1000
    max_subscriptions: int = 1000


@dataclass(frozen=True)
class RelaySettings:
    """Optional smarthost for all outbound mail."""

    host: str = ""
    port: int = 587
    username: str = ""
    password: str = ""
    require_tls: bool = True


@dataclass(frozen=True)
class PublicEndpoint:
    """Where clients reach one listener from outside, when that differs from
    [server] hostname and the listener's own port (NAT, a TLS proxy)."""

    host: str = ""  # empty: [autoconfig] host, else [server] hostname
    port: int = 0  # 0: the listener's port


@dataclass(frozen=True)
class AutoconfigSettings:
    """What client auto-configuration (Thunderbird, Outlook, iPhone, DNS)
    advertises; every field empty means "what the server listens on"."""

    host: str = ""  # empty: [server] hostname
    imap: PublicEndpoint = field(default_factory=PublicEndpoint)
    imaps: PublicEndpoint = field(default_factory=PublicEndpoint)
    pop3: PublicEndpoint = field(default_factory=PublicEndpoint)
    pop3s: PublicEndpoint = field(default_factory=PublicEndpoint)
    submission: PublicEndpoint = field(default_factory=PublicEndpoint)
    submissions: PublicEndpoint = field(default_factory=PublicEndpoint)
    managesieve: PublicEndpoint = field(default_factory=PublicEndpoint)


@dataclass(frozen=True)
class LogSettings:
    """Audit logs under data_dir/log: one file per kind and UTC day, files
    older than the kept days are deleted (issue #8)."""

    login_days: int = 30
    mail_days: int = 30
    admin_days: int = 365
    traffic_days: int = 92  # traffic statistics: three months
    access_days: int = 14  # the http listener's requests (issue 16: not in the main log)
    access_lines_per_second: int = 50  # beyond: counted, one "suppressed" line a second
    prune_interval: int = 3600  # seconds between pruning runs


@dataclass(frozen=True)
class MetricsSettings:
    """/metrics (Prometheus) on the http listener.  Served on loopback
    listener addresses; on any other address only with public = true."""

    enabled: bool = True
    public: bool = False
    # Client networks allowed to scrape ("10.0.0.0/8"); empty: any client.
    allow: tuple[str, ...] = ()


@dataclass(frozen=True)
class DnsSettings:
    """Where every DNS lookup goes (MX today; SPF, DKIM, DMARC later):
    "host:port" resolvers (port 53 when left out, "[v6]:port" for IPv6),
    asked with twisted.names -- never a blocking resolver on the reactor.
    Empty: the system's (/etc/resolv.conf)."""

    servers: tuple[str, ...] = ()

    def addresses(self) -> list[tuple[str, int]]:
        """servers as (host, port), checked by parse()."""
        return [parse_dns_server(server) for server in self.servers]


def parse_dns_server(text: str) -> tuple[str, int]:
    """ "127.0.0.1:5353" -> ("127.0.0.1", 5353); "::1" or "[::1]:53" for
    IPv6; ValueError for anything that is not an IP address and a port."""
    import ipaddress

    text = text.strip()
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ("" if not rest else "x")
    elif text.count(":") == 1:
        host, _, port_text = text.partition(":")
    else:
        host, port_text = text, ""
    ipaddress.ip_address(host)  # a resolver is an address: no lookup to find the resolver
    port = int(port_text) if port_text else 53
    if not 0 < port <= 65535:
        raise ValueError(f"port {port} out of range")
    return host, port


@dataclass(frozen=True)
class FilterSettings:
    """The delivery pipeline's scanners and thresholds (issue 17,
    DESIGN.md [filter]).  Per-domain overrides of the scores and of the
    DMARC reject policy: `xmailctl domain set D spam_score=.. ...`."""

    rspamd: str = ""            # "http://127.0.0.1:11333"; "" = off
    rspamd_controller: str = ""  # "http://127.0.0.1:11334" for learning; "" = off
    rspamd_password: str = ""   # the controller's password, if it asks for one
    clamd: str = ""             # "unix:/run/clamav/clamd.ctl" or "tcp:127.0.0.1:3310"; "" = off
    scan_timeout: int = 20      # seconds per scanner
    on_scanner_failure: str = "tempfail"  # or "accept" (delivered, X-Spam-Status: unscanned)
    spam_score: float = 6.0     # at or above: into Junk
    reject_score: float = 15.0  # at or above: 550 5.7.1
    # SPF, DKIM, DMARC and ARC on MX mail (off: no Authentication-Results).
    authenticate: bool = True
    dkim_max_signatures: int = 5  # DKIM-Signature fields evaluated per message; the rest ignored
    # Submissions per user and minute before the burst rule refuses (0 = off).
    burst_per_minute: int = 0


SCANNER_POLICIES = ("tempfail", "accept")


@dataclass(frozen=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    listen: ListenSettings = field(default_factory=ListenSettings)
    limits: LimitSettings = field(default_factory=LimitSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    autoconfig: AutoconfigSettings = field(default_factory=AutoconfigSettings)
    log: LogSettings = field(default_factory=LogSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    dns: DnsSettings = field(default_factory=DnsSettings)
    filter: FilterSettings = field(default_factory=FilterSettings)
    # domain -> "host:port": deliver mail for a domain to a fixed host
    # instead of its MX (tests deliver to a second instance on loopback).
    transport: dict[str, str] = field(default_factory=dict)
    source: str = "<embedded default>"

    @property
    def data_dir(self) -> str:
        return self.server.data_dir

    def path(self, *parts: str) -> str:
        """A path under the data directory."""
        return os.path.join(self.server.data_dir, *parts)


def _check(value: Any, typ: Any, key: str, source: str) -> Any:
    origin = get_origin(typ)
    if typ is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{source}: {key} must be true or false, not {value!r}")
        return value
    if typ is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{source}: {key} must be an integer, not {value!r}")
        if value < 0:
            raise ConfigError(f"{source}: {key} must not be negative, not {value}")
        return value
    if typ is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{source}: {key} must be a number, not {value!r}")
        return float(value)
    if typ is str:
        if not isinstance(value, str):
            raise ConfigError(f"{source}: {key} must be a string, not {value!r}")
        return value
    if origin is tuple:
        (item,) = get_args(typ)[:1]
        if isinstance(value, str) and item is str:
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"{source}: {key} must be a list, not {value!r}")
        return tuple(_check(v, item, f"{key}[{i}]", source) for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a table, not {value!r}")
        return {
            str(k).lower(): _check(v, str, f"{key}.{k}", source) for k, v in value.items()
        }
    if isinstance(typ, type) and hasattr(typ, "__dataclass_fields__"):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a table, not {value!r}")
        return _section(typ, value, key, source)
    raise ConfigError(f"{source}: {key} has an unsupported type")  # pragma: no cover


def _section(cls: type, table: dict[str, Any], prefix: str, source: str) -> Any:
    hints = get_type_hints(cls)
    known = {f.name for f in fields(cls) if f.name != "source"}
    values = {}
    for key, value in table.items():
        full = f"{prefix}.{key}" if prefix else key
        if key not in known:
            raise ConfigError(f"{source}: unknown key {full!r}")
        values[key] = _check(value, hints[key], full, source)
    return cls(**values)


def parse(text: str, source: str = "<string>") -> Settings:
    """Settings from TOML text; relative data_dir stays relative to the cwd."""
    try:
        table = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{source}: {e}") from None
    settings = _section(Settings, table, "", source)
    if not settings.server.hostname.strip() or any(
        c in settings.server.hostname for c in " \r\n\t\0/"
    ):
        raise ConfigError(f"{source}: server.hostname {settings.server.hostname!r} is not a host name")
    _check_autoconfig(settings.autoconfig, source)
    _check_metrics(settings.metrics, source)
    for i, server in enumerate(settings.dns.servers):
        try:
            parse_dns_server(server)
        except ValueError:
            raise ConfigError(f"{source}: dns.servers[{i}] {server!r} is not an IP address "
                              f"with an optional port (\"127.0.0.1:5353\", \"[::1]:53\")") from None
    _check_filter(settings.filter, source)
    return replace(settings, source=source)


def _check_filter(settings: FilterSettings, source: str) -> None:
    if settings.on_scanner_failure not in SCANNER_POLICIES:
        raise ConfigError(f"{source}: filter.on_scanner_failure {settings.on_scanner_failure!r} "
                          f"must be \"tempfail\" or \"accept\"")
    for key in ("rspamd", "rspamd_controller"):
        url = getattr(settings, key)
        if url and not url.startswith(("http://", "https://")):
            raise ConfigError(f"{source}: filter.{key} {url!r} is not an http:// or https:// URL")
    if settings.clamd and not settings.clamd.startswith(("unix:", "tcp:")):
        raise ConfigError(f"{source}: filter.clamd {settings.clamd!r} must be \"unix:PATH\" "
                          f"or \"tcp:HOST:PORT\"")
    if settings.spam_score > settings.reject_score:
        raise ConfigError(f"{source}: filter.spam_score {settings.spam_score} is above "
                          f"filter.reject_score {settings.reject_score}")


def _check_metrics(metrics: MetricsSettings, source: str) -> None:
    import ipaddress

    for i, network in enumerate(metrics.allow):
        try:
            ipaddress.ip_network(network, strict=False)
        except ValueError:
            raise ConfigError(f"{source}: metrics.allow[{i}] {network!r} is not a network") from None


def _is_host_name(name: str) -> bool:
    return bool(name.strip()) and not any(c in name for c in " \r\n\t\0/")


def _check_autoconfig(autoconfig: AutoconfigSettings, source: str) -> None:
    # These values end up in XML, plists and DNS zone text: refuse what is
    # not a host name or a TCP port rather than escape it everywhere.
    if autoconfig.host and not _is_host_name(autoconfig.host):
        raise ConfigError(f"{source}: autoconfig.host {autoconfig.host!r} is not a host name")
    for f in fields(autoconfig):
        endpoint = getattr(autoconfig, f.name)
        if not isinstance(endpoint, PublicEndpoint):
            continue
        if endpoint.host and not _is_host_name(endpoint.host):
            raise ConfigError(f"{source}: autoconfig.{f.name}.host {endpoint.host!r} is not a host name")
        if endpoint.port > 65535:
            raise ConfigError(f"{source}: autoconfig.{f.name}.port must be at most 65535, "
                              f"not {endpoint.port}")


def load(path: str | None) -> Settings:
    """Settings from a TOML file, or the embedded default when path is None."""
    if path is None:
        return Settings()
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ConfigError(f"{path}: cannot read config: {e.strerror}") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: config is not UTF-8") from None
    return parse(text, path)
