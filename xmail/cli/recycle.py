# -*- test-case-name: tests.test_cli -*-
"""`xmailctl recycle list|restore ADDRESS` and `xmailctl reindex [ADDRESS]`."""

from __future__ import annotations

import argparse
from typing import Any

from xmail.cli.context import CliContext, CliError, command, group, uid_argument, utc_time


def register(subparsers: Any) -> None:
    recycle = group(subparsers, "recycle", "expunged messages kept in Recycle")
    command(recycle, "list", recycle_list,
            "list: UID<TAB>FOLDER<TAB>EXPUNGED<TAB>EXPIRES<TAB>SIZE<TAB>SUBJECT"
            ).add_argument("address", metavar="ADDRESS")
    restore = command(recycle, "restore", recycle_restore,
                      "put messages back where they were: UID<TAB>FOLDER<TAB>NEW_UID")
    restore.add_argument("address", metavar="ADDRESS")
    which = restore.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every message in Recycle")
    which.add_argument("uids", metavar="UID", type=uid_argument, nargs="*", default=[])

    reindex_parser = subparsers.add_parser(
        "reindex", help="rebuild the index from the Maildir (all users, or one)")
    reindex_parser.add_argument("address", metavar="ADDRESS", nargs="?")
    reindex_parser.set_defaults(func=reindex)


def _canonical_user(ctx: CliContext, address: str) -> str:
    canonical = ctx.directory.resolve(address)
    if canonical is None:
        raise CliError(f"no such user {address}")
    return canonical


def recycle_list(ctx: CliContext, args: argparse.Namespace) -> None:
    address = _canonical_user(ctx, args.address)
    for item in ctx.store.mailbox(address).recycle_list():
        ctx.out(item.uid, item.original_folder, utc_time(item.expunged_at), utc_time(item.expires_at),
                item.size, item.subject)


def recycle_restore(ctx: CliContext, args: argparse.Namespace) -> None:
    address = _canonical_user(ctx, args.address)
    mailbox = ctx.store.mailbox(address)
    if args.all:
        uids = [item.uid for item in mailbox.recycle_list()]
    else:
        uids = args.uids
        known = {item.uid for item in mailbox.recycle_list()}
        missing = [uid for uid in uids if uid not in known]
        if missing:
            raise CliError(f"not in Recycle: {' '.join(map(str, missing))}")
    if not uids:
        ctx.done("Recycle is empty: nothing restored")
        return
    for recycleuid_argument, folder, new_uid in ctx.wait(mailbox.recycle_restore(uids)):
        ctx.out(recycleuid_argument, folder, new_uid)


def reindex(ctx: CliContext, args: argparse.Namespace) -> None:
    address = _canonical_user(ctx, args.address) if args.address else None
    result = ctx.wait(ctx.store.reindex(address))
    if isinstance(result, dict):
        for key, value in sorted(result.items()):
            ctx.out(key, value)
    elif isinstance(result, list | tuple):
        for item in result:
            ctx.out(*(item if isinstance(item, list | tuple) else (item,)))
    elif result is not None:
        ctx.out(result)
