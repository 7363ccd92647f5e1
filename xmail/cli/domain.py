# -*- test-case-name: tests.test_cli -*-
"""`xmailctl domain add|remove|list [DOMAIN]`, `domain alias ALIAS_DOMAIN --to DOMAIN`,
`domain set DOMAIN KEY=VALUE ...`, `domain show DOMAIN`."""

from __future__ import annotations

import argparse
from typing import Any

from xmail.cli.context import CliContext, CliError, command, group
from xmail.filter.policy import DOMAIN_KEYS, check_setting


def register(subparsers: Any) -> None:
    domain = group(subparsers, "domain", "hosted domains and alias domains")
    for name, func, text in (("add", domain_add, "host a domain"),
                             ("remove", domain_remove, "stop hosting a domain (it must have no users, "
                                                       "aliases or alias domains left)")):
        command(domain, name, func, text).add_argument("domain", metavar="DOMAIN")
    command(domain, "list", domain_list, "list domains (alias domains with their primary)")
    alias_domain = command(domain, "alias", domain_alias,
                           "make ALIAS_DOMAIN receive for every user and alias of DOMAIN")
    alias_domain.add_argument("alias_domain", metavar="ALIAS_DOMAIN")
    alias_domain.add_argument("--to", metavar="DOMAIN", required=True)
    setter = command(domain, "set", domain_set,
                     f"set per-domain settings ({', '.join(sorted(DOMAIN_KEYS))}; KEY= removes)")
    setter.add_argument("domain", metavar="DOMAIN")
    setter.add_argument("settings", metavar="KEY=VALUE", nargs="+")
    command(domain, "show", domain_show, "per-domain settings: KEY<TAB>VALUE").add_argument(
        "domain", metavar="DOMAIN")


def domain_add(ctx: CliContext, args: argparse.Namespace) -> None:
    ctx.done(f"domain {ctx.directory.add_domain(args.domain)} added")


def domain_remove(ctx: CliContext, args: argparse.Namespace) -> None:
    ctx.directory.remove_domain(args.domain)
    ctx.done(f"domain {args.domain.strip().lower()} removed")


def domain_list(ctx: CliContext, args: argparse.Namespace) -> None:
    for domain, alias_of in ctx.directory.list_domains():
        if alias_of:
            ctx.out(domain, "alias-of", alias_of)
        else:
            ctx.out(domain)


def domain_set(ctx: CliContext, args: argparse.Namespace) -> None:
    if not ctx.directory.is_local_domain(args.domain):
        raise CliError(f"no such domain {args.domain}")
    changes = []
    for item in args.settings:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if not eq or not key:
            raise CliError(f"expected KEY=VALUE, not {item!r}")
        if key not in DOMAIN_KEYS:
            raise CliError(f"unknown domain setting {key!r} (known: {', '.join(sorted(DOMAIN_KEYS))})")
        try:
            changes.append((key, check_setting(DOMAIN_KEYS, key, value.strip())))
        except ValueError as e:
            raise CliError(str(e)) from None
    for key, value in changes:
        ctx.directory.set_domain_setting(args.domain, key, value)
    ctx.done(f"domain {args.domain.strip().lower()}: {' '.join(args.settings)}")


def domain_show(ctx: CliContext, args: argparse.Namespace) -> None:
    if not ctx.directory.is_local_domain(args.domain):
        raise CliError(f"no such domain {args.domain}")
    for key, value in sorted(ctx.directory.domain_settings(args.domain).items()):
        ctx.out(key, value)


def domain_alias(ctx: CliContext, args: argparse.Namespace) -> None:
    alias = ctx.directory.add_alias_domain(args.alias_domain, args.to)
    ctx.done(f"domain {alias} now receives for {args.to.strip().lower()}")
