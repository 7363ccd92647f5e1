# -*- test-case-name: tests.test_cli -*-
"""`xmailctl domain add|remove|list [DOMAIN]`, `domain alias ALIAS_DOMAIN --to DOMAIN`."""

from __future__ import annotations

import argparse
from typing import Any

from xmail.cli.context import CliContext, command, group


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


def domain_alias(ctx: CliContext, args: argparse.Namespace) -> None:
    alias = ctx.directory.add_alias_domain(args.alias_domain, args.to)
    ctx.done(f"domain {alias} now receives for {args.to.strip().lower()}")
