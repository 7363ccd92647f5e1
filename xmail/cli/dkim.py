# -*- test-case-name: tests.test_cli_dkim -*-
"""`xmailctl dkim add|rotate|list|remove`: the DKIM signing keys of hosted
and alias domains (xmail.filter.dkimkeys, under data_dir/dkim).

    xmailctl dkim add DOMAIN [--algorithm rsa|ed25519]
    xmailctl dkim rotate DOMAIN [--algorithm rsa|ed25519]
    xmailctl dkim list DOMAIN [--csv]
    xmailctl dkim remove DOMAIN SELECTOR

The running server picks up a change with its next message (it re-reads
the domain's state file when that changes).  After `add` or `rotate`,
publish the new selector's TXT record (`xmailctl dns DOMAIN` prints it)
before mail goes out, or receivers cannot verify the signatures.
"""

from __future__ import annotations

import argparse
from typing import Any

from xmail.cli.context import CliContext, CliError, TableOutput, command, group, hosted_domain, utc_time
from xmail.filter.dkimkeys import ALGORITHMS, RSA, DkimKeyError, DkimKeyStore

LIST_HEADER = ("selector", "algorithm", "state", "created", "dns_name")


def register(subparsers: Any) -> None:
    dkim = group(subparsers, "dkim", "DKIM signing keys of hosted domains")
    for name, func, text in (
            ("add", dkim_add, "create a signing key (a new active selector) for a hosted domain"),
            ("rotate", dkim_rotate, "create a new active selector; the old one of that algorithm is "
                                    "retired (still published until removed)")):
        parser = command(dkim, name, func, text)
        parser.add_argument("domain", metavar="DOMAIN")
        parser.add_argument("--algorithm", choices=ALGORITHMS, default=RSA,
                            help="rsa (2048 bits, the default) or ed25519 (RFC 8463)")
    listing = command(dkim, "list", dkim_list, "list a domain's selectors: selector, algorithm, state, "
                                               "created, DNS name")
    listing.add_argument("domain", metavar="DOMAIN")
    listing.add_argument("--csv", action="store_true", help="CSV with a header row")
    remove = command(dkim, "remove", dkim_remove, "delete a retired selector and its key")
    remove.add_argument("domain", metavar="DOMAIN")
    remove.add_argument("selector", metavar="SELECTOR")


def _store(ctx: CliContext) -> DkimKeyStore:
    return DkimKeyStore(ctx.settings.path("dkim"))


def dkim_add(ctx: CliContext, args: argparse.Namespace) -> None:
    domain = hosted_domain(ctx, args.domain)
    try:
        selector = _store(ctx).add(domain, args.algorithm)
    except DkimKeyError as e:
        raise CliError(str(e)) from None
    ctx.done(f"dkim {domain}: selector {selector.name} ({selector.algorithm}) added; publish "
             f"{selector.dns_name(domain)} (see `xmailctl dns {domain}`)")


def dkim_rotate(ctx: CliContext, args: argparse.Namespace) -> None:
    domain = hosted_domain(ctx, args.domain)
    try:
        new, retired = _store(ctx).rotate(domain, args.algorithm)
    except DkimKeyError as e:
        raise CliError(str(e)) from None
    old = ", ".join(s.name for s in retired) or "none"
    ctx.done(f"dkim {domain}: selector {new.name} ({new.algorithm}) active, retired: {old}; publish "
             f"{new.dns_name(domain)} (see `xmailctl dns {domain}`)")


def dkim_list(ctx: CliContext, args: argparse.Namespace) -> None:
    domain = hosted_domain(ctx, args.domain)
    try:
        selectors = _store(ctx).selectors(domain)
    except DkimKeyError as e:
        raise CliError(str(e)) from None
    out = TableOutput(ctx, args.csv, LIST_HEADER)
    for s in selectors:
        out.row([s.name, s.algorithm, s.state, utc_time(s.created), s.dns_name(domain)])


dkim_list.read_only = True  # type: ignore[attr-defined]  # no admin log line (xmail.ops.admin)


def dkim_remove(ctx: CliContext, args: argparse.Namespace) -> None:
    # Not only hosted domains: the keys of a domain removed since can go too.
    try:
        removed = _store(ctx).remove(args.domain, args.selector)
    except DkimKeyError as e:
        raise CliError(str(e)) from None
    ctx.done(f"dkim {args.domain.strip().lower()}: selector {removed.name} removed "
             "(its TXT record can go from DNS)")
