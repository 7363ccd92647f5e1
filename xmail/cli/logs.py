# -*- test-case-name: tests.ops.test_cli -*-
"""`xmailctl log` and `xmailctl stats` (the audit logs of xmail.ops).

    xmailctl log logins|mail|admin [--user U] [--domain D] [--since DATE] [--csv]
    xmailctl stats traffic [--user U] [--domain D] [--since DATE] [--csv]
    xmailctl stats usage [--domain D] [--csv]

Without --csv: one record a line, tab-separated (xmail.cli's style), after
a header row for `stats` (its columns are numbers a reader cannot tell
apart without one).  With --csv: a header row, then RFC 4180 rows.  Control characters are escaped
(\\r, \\n) in both, so a record is always one line, and a CSV text cell that
a spreadsheet would run as a formula (starting with = + - @) gets a leading
apostrophe.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from xmail.cli.context import CliError, TableOutput
from xmail.ops import logfiles, queries


def _since(ctx: Any, args: argparse.Namespace) -> float | None:
    if not args.since:
        return None
    try:
        return queries.parse_since(args.since, time.time())
    except queries.QueryError as e:
        raise CliError(str(e)) from None


def show_log(ctx: Any, args: argparse.Namespace) -> None:
    file_kind, columns, _row = queries.LOGS[args.command]
    records = logfiles.read_events(ctx.settings.path("log"), file_kind, _since(ctx, args))
    output = TableOutput(ctx, args.csv, columns)
    for row in queries.log_rows(args.command, records, args.user, args.domain):
        output.row(row)


def stats_traffic(ctx: Any, args: argparse.Namespace) -> None:
    traffic = logfiles.read_traffic(ctx.settings.path("log"), _since(ctx, args))
    output = TableOutput(ctx, args.csv, queries.TRAFFIC_HEADER, tsv_header=True)
    for row in queries.traffic_rows(traffic, args.user, args.domain):
        output.row(row)


def stats_usage(ctx: Any, args: argparse.Namespace) -> None:
    output = TableOutput(ctx, args.csv, queries.USAGE_COLUMNS, tsv_header=True)
    records = ctx.directory.list_users(args.domain)
    store = ctx.store
    for record in records:
        try:
            usage = store.mailbox(record.address).quota()
        except Exception as e:  # not provisioned yet: nothing stored
            ctx.warn(f"{record.address}: {e}")
            continue
        output.row(queries.usage_row(record.address, usage))


for _handler in (show_log, stats_traffic, stats_usage):
    _handler.read_only = True  # type: ignore[attr-defined]  # not in the admin log


def register(subparsers: Any) -> None:
    log = subparsers.add_parser("log", help="audit logs: logins, mail events, admin changes",
                                description="Show audit log records, oldest first.")
    commands = log.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, text in (("logins", "TIME EVENT ACCOUNT PROTOCOL IP METHOD RESULT"),
                       ("mail", "TIME EVENT ACCOUNT SENDER RECIPIENTS SIZE FOLDER MESSAGE_ID "
                                "RESULT DETAILS"),
                       ("admin", "TIME OPERATOR ACCOUNT RESULT COMMAND")):
        parser = commands.add_parser(name, help=f"{name}: {text}", description=f"{name}: {text}")
        _filters(parser, user_help="operator" if name == "admin" else "address")
        parser.set_defaults(func=show_log)

    stats = subparsers.add_parser("stats", help="traffic and usage statistics",
                                  description="Traffic per user per day; mailbox usage.")
    commands = stats.add_subparsers(dest="command", metavar="COMMAND", required=True)
    traffic = commands.add_parser(
        "traffic", help="DAY USER and messages/bytes received and sent, internal and external")
    _filters(traffic, user_help="address")
    traffic.set_defaults(func=stats_traffic)
    usage = commands.add_parser("usage", help="ADDRESS BYTES MESSAGES LIMITS and %% of quota")
    usage.add_argument("--domain", metavar="D", help="only users of this domain")
    usage.add_argument("--csv", action="store_true", help="CSV with a header row")
    usage.set_defaults(func=stats_usage)


def _filters(parser: argparse.ArgumentParser, user_help: str) -> None:
    parser.add_argument("--user", metavar="U", help=f"only records of this {user_help}")
    parser.add_argument("--domain", metavar="D", help="only records with an address in this domain")
    parser.add_argument("--since", metavar="DATE",
                        help="from this time: YYYY-MM-DD, YYYY-MM-DDTHH:MM (UTC), or 7d, 12h, 30m ago")
    parser.add_argument("--csv", action="store_true", help="CSV with a header row")
