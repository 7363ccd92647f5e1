# -*- test-case-name: tests.test_cli -*-
"""`xmailctl alias add ALIAS_ADDRESS TARGET_ADDRESS`, `alias remove|list`."""

from __future__ import annotations

import argparse
from typing import Any

from xmail.cli.context import CliContext, command, group


def register(subparsers: Any) -> None:
    alias = group(subparsers, "alias", "address aliases of users")
    add_alias = command(alias, "add", alias_add, "deliver ALIAS_ADDRESS to TARGET_ADDRESS's mailbox")
    add_alias.add_argument("alias", metavar="ALIAS_ADDRESS")
    add_alias.add_argument("target", metavar="TARGET_ADDRESS")
    command(alias, "remove", alias_remove, "remove an alias").add_argument("alias", metavar="ALIAS_ADDRESS")
    command(alias, "list", alias_list, "list aliases: ALIAS<TAB>TARGET")


def alias_add(ctx: CliContext, args: argparse.Namespace) -> None:
    target = ctx.directory.add_alias(args.alias, args.target)  # the user's canonical address
    ctx.done(f"alias {args.alias.strip().lower()} added for {target}")


def alias_remove(ctx: CliContext, args: argparse.Namespace) -> None:
    ctx.directory.remove_alias(args.alias)
    ctx.done(f"alias {args.alias.strip().lower()} removed")


def alias_list(ctx: CliContext, args: argparse.Namespace) -> None:
    for alias, target in ctx.directory.list_aliases():
        ctx.out(alias, target)
