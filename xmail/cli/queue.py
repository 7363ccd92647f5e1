# -*- test-case-name: tests.queue.test_two_servers -*-
"""`xmailctl queue list | retry (ID ... | --all) | delete ID ...`.

Works while the daemon runs: changes go straight to the spool's LMDB
records (LMDB serialises writers across processes) and the daemon's queue
notices them at its next poll (every few seconds).
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from xmail.cli.context import CliError
from xmail.queue.spool import QUEUED, Spool, valid_id


def register(subparsers: Any) -> None:
    group = subparsers.add_parser("queue", help="the outbound queue")
    commands = group.add_subparsers(dest="command", required=True)
    show = commands.add_parser(
        "list", help="queued messages, one line per recipient: ID ARRIVAL SENDER SIZE RECIPIENT "
        "STATE ATTEMPTS NEXT-ATTEMPT LAST-REPLY")
    show.set_defaults(func=queue_list)
    retry = commands.add_parser("retry", help="try queued recipients now")
    which = retry.add_mutually_exclusive_group(required=True)
    which.add_argument("ids", nargs="*", default=[], metavar="ID")
    which.add_argument("--all", action="store_true", help="every queued message")
    retry.set_defaults(func=queue_retry)
    delete = commands.add_parser("delete", help="drop messages from the queue (no bounce)")
    delete.add_argument("ids", nargs="+", metavar="ID")
    delete.set_defaults(func=queue_delete)


def _spool(ctx: Any) -> Spool:
    return Spool(ctx.env, ctx.settings.path("queue"))


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def _check_ids(ids: list[str]) -> None:
    for queue_id in ids:
        if not valid_id(queue_id):
            raise CliError(f"not a queue id: {queue_id!r}")


def queue_list(ctx: Any, args: argparse.Namespace) -> None:
    spool = _spool(ctx)
    with ctx.env.read() as txn:
        messages = sorted(spool.all(txn), key=lambda m: (m.created, m.id))
    for m in messages:
        for r in m.recipients:
            state = r.state if not r.report else f"{r.state}+dsn"
            ctx.out(m.id, _when(m.created), m.mail_from or "<>", m.size, r.address, state, r.attempts,
                    _when(r.next_attempt) if r.state == QUEUED else "-", r.diagnostic or "-")


def queue_retry(ctx: Any, args: argparse.Namespace) -> None:
    spool = _spool(ctx)
    now = time.time()
    if args.all:
        with ctx.env.read() as txn:
            ids = [m.id for m in spool.all(txn) if m.next_attempt() is not None]
    else:
        _check_ids(args.ids)
        ids = args.ids

    def reschedule(txn: Any) -> list[str]:
        return [queue_id for queue_id in ids if not spool.reschedule(txn, queue_id, now)]

    missing = ctx.env.write_sync(reschedule)
    for queue_id in ids:
        if queue_id not in missing:
            ctx.out(queue_id, "retry")
    if missing:
        raise CliError(f"not in the queue: {', '.join(missing)}")


def queue_delete(ctx: Any, args: argparse.Namespace) -> None:
    _check_ids(args.ids)
    spool = _spool(ctx)
    deleted = ctx.env.write_sync(lambda txn: [i for i in args.ids if spool.delete(txn, i) is not None])
    for queue_id in deleted:
        # After the commit: a crash here leaves an orphan file, swept at start.
        spool.remove_message(queue_id)
        ctx.out(queue_id, "deleted")
    missing = [i for i in args.ids if i not in deleted]
    if missing:
        raise CliError(f"not in the queue: {', '.join(missing)}")
