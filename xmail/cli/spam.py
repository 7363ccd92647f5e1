# -*- test-case-name: tests.filter.test_lists_daemon,tests.filter.test_policy -*-
"""`xmailctl spam allow|block add|remove|list (--domain D | --user U) [PATTERN]`,
`xmailctl spam digest [--user U] [--force]`.

PATTERN: an address, `@domain` (that domain) or `*.domain` (it and its
subdomains).  Precedence and effect: xmail.filter.lists.  The running
daemon sees a change at once (the lists are read from the index per
message).
"""

from __future__ import annotations

import argparse
from typing import Any

from xmail.cli.context import CliContext, CliError, command, group
from xmail.filter.digest import SpamDigest
from xmail.filter.lists import KINDS, ListError, SenderLists, scope_of


def register(subparsers: Any) -> None:
    spam = group(subparsers, "spam", "sender allow and block lists")
    for kind in KINDS:
        kind_parser = spam.add_parser(kind, help=f"the {kind} list", description=f"the {kind} list")
        actions = kind_parser.add_subparsers(dest="action", metavar="ACTION", required=True)
        for action, func, text in (("add", spam_add, f"add PATTERN to the {kind} list"),
                                   ("remove", spam_remove, f"remove PATTERN from the {kind} list"),
                                   ("list", spam_list, f"the {kind} list's patterns, one a line")):
            parser = command(actions, action, func, text)
            scope = parser.add_mutually_exclusive_group(required=True)
            scope.add_argument("--domain", metavar="DOMAIN")
            scope.add_argument("--user", metavar="ADDRESS")
            if action != "list":
                parser.add_argument("pattern", metavar="PATTERN")
            parser.set_defaults(kind=kind)
    digest = command(spam, "digest", spam_digest,
                     "send the spam digests that are due now (the daemon does this hourly)")
    digest.add_argument("--user", metavar="ADDRESS", help="only this user")
    digest.add_argument("--force", action="store_true",
                        help="send even if the period has not passed (still nothing for an empty list)")


def _scope(ctx: CliContext, args: argparse.Namespace) -> str:
    if args.domain is not None and not ctx.directory.is_local_domain(args.domain):
        raise CliError(f"no such domain {args.domain}")
    if args.user is not None and ctx.directory.user(args.user) is None:
        raise CliError(f"no such user {args.user}")
    try:
        return scope_of(domain=args.domain, user=args.user)
    except ListError as e:
        raise CliError(str(e)) from None


def _where(args: argparse.Namespace) -> str:
    return f"domain {args.domain.strip().lower()}" if args.domain is not None else \
        f"user {args.user.strip().lower()}"


def spam_add(ctx: CliContext, args: argparse.Namespace) -> None:
    scope = _scope(ctx, args)
    try:
        pattern = SenderLists(ctx.env).add(scope, args.kind, args.pattern)
    except ListError as e:
        raise CliError(str(e)) from None
    ctx.done(f"{args.kind} {pattern} added for {_where(args)}")


def spam_remove(ctx: CliContext, args: argparse.Namespace) -> None:
    scope = _scope(ctx, args)
    try:
        removed = SenderLists(ctx.env).remove(scope, args.kind, args.pattern)
    except ListError as e:
        raise CliError(str(e)) from None
    if not removed:
        raise CliError(f"{args.pattern} is not on the {args.kind} list of {_where(args)}")
    ctx.done(f"{args.kind} {args.pattern.strip().lower()} removed for {_where(args)}")


def spam_digest(ctx: CliContext, args: argparse.Namespace) -> None:
    from twisted.internet import defer

    user = None
    if args.user is not None:
        record = ctx.directory.user(args.user)
        if record is None:
            raise CliError(f"no such user {args.user}")
        user = record.address
    digest = SpamDigest(ctx.store, ctx.directory, ctx.settings.server.hostname,
                        lambda fn, *a: defer.maybeDeferred(fn, *a))
    sent = ctx.wait(digest.send_due(only=user, force=args.force))
    ctx.done(f"spam digest sent to {len(sent)} user(s)" + (f": {', '.join(sent)}" if sent else ""))


def spam_list(ctx: CliContext, args: argparse.Namespace) -> None:
    for pattern in SenderLists(ctx.env).list(_scope(ctx, args), args.kind):
        ctx.out(pattern)
