# -*- test-case-name: tests.autoconfig.test_cli -*-
"""`xmailctl dns DOMAIN`: the zone fragment an operator adds for a domain."""

from __future__ import annotations

import argparse
from typing import Any

from xmail.autoconfig.dnszone import zone_fragment
from xmail.autoconfig.model import AddressError, client_settings, parse_domain
from xmail.cli.context import CliError


def register(subparsers: Any) -> None:
    dns = subparsers.add_parser(
        "dns", help="print the DNS records (MX, SPF, autoconfig, SRV) to add for a hosted domain")
    dns.add_argument("domain", metavar="DOMAIN")
    dns.add_argument("--ttl", type=_ttl, default=3600, metavar="SECONDS", help="record TTL (default 3600)")
    dns.set_defaults(func=print_zone)


def _ttl(text: str) -> int:
    # RFC 2181 §8: 0 .. 2^31 - 1.
    if not text.isdigit() or int(text) > 2**31 - 1:
        raise argparse.ArgumentTypeError(f"not a TTL: {text!r}")
    return int(text)


def print_zone(ctx: Any, args: argparse.Namespace) -> None:
    try:
        domain = parse_domain(args.domain)
    except AddressError:
        raise CliError(f"{args.domain!r} is not a domain name") from None
    if not ctx.directory.is_local_domain(domain):
        raise CliError(f"{domain} is not a hosted domain (add it with `xmailctl domain add {domain}`)")
    # From the config (with [autoconfig] overrides): the running server's
    # bound ports are not visible from here, and DNS must name fixed ports.
    ctx.stdout.write(zone_fragment(domain, client_settings(ctx.settings), ttl=args.ttl))
