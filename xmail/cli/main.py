# -*- test-case-name: tests.test_cli -*-
"""`xmailctl`: the admin command line (DESIGN.md "xmailctl").

    xmailctl [--config FILE | --data DIR [--init]] GROUP COMMAND ...

Without --config or --data the config named by $XMAIL_CONFIG is used, else
the embedded default (data in ./xmail-data), like `twistd xmail`.  With
--data DIR or the embedded default, a directory that holds no index is
refused (a typo, or the wrong working directory, would otherwise create a
new empty store and report success -- issue 16); --init creates it.  With
a config file its data_dir is created if need be, as the daemon would.

It works while the daemon runs: it opens the same LMDB environment (LMDB's
lock file serialises writers across processes) and writes synchronously in
its own thread; the daemon reads the directory afresh on every lookup and
the store notices index changes made elsewhere.  Mailbox operations use the
store in synchronous mode (`MailStore(env, settings, directory,
reactor=None)`), whose Deferreds have already fired when they are returned.

Output meant for scripts is one record a line, fields separated by a tab;
a change confirms itself with one line.  Errors go to stderr with exit
status 1 (2 for a usage error).

Every command group is a module of this package with
`register(subparsers)`, listed in GROUPS.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

from xmail.auth.interfaces import DirectoryError
from xmail.cli import alias, dkim, dns, domain, logs, queue, recycle, sieve, spam, user
from xmail.cli.context import CliContext, CliError
from xmail.config import ConfigError, Settings, load
from xmail.ops.admin import run_recorded
from xmail.store.interfaces import StoreError

# In the order `xmailctl --help` lists them.
GROUPS = (domain, user, alias, recycle, queue, logs, dkim, dns, spam, sieve)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xmailctl", description="Administer an xmail server (works while it runs).")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="FILE", help="TOML config file (default: $XMAIL_CONFIG, "
                                                        "else the embedded default)")
    where.add_argument("--data", metavar="DIR", help="data directory (instead of a config file)")
    parser.add_argument("--init", action="store_true",
                        help="create the data directory if it holds no xmail data yet "
                             "(without it, --data DIR and ./xmail-data must exist)")
    subparsers = parser.add_subparsers(dest="group", metavar="GROUP", required=True)
    for module in GROUPS:
        module.register(subparsers)
    return parser


def _settings(args: argparse.Namespace) -> tuple[Settings, bool]:
    """(settings, whether a data_dir without an index may be created)."""
    if args.data:
        settings = Settings()
        return dataclasses.replace(settings, server=dataclasses.replace(settings.server,
                                                                        data_dir=args.data)), False
    config = args.config or os.environ.get("XMAIL_CONFIG") or None
    # A config file names its data_dir on purpose; the embedded default's
    # ./xmail-data depends on the working directory.
    return load(config), config is not None


def holds_index(data_dir: str) -> bool:
    """Has a server or `xmailctl --init` used this data directory?"""
    return os.path.isfile(os.path.join(data_dir, "index", "data.mdb"))


def _check_data_dir(settings: Settings, may_create: bool, init: bool) -> None:
    if may_create or init or holds_index(settings.data_dir):
        return
    where = os.path.abspath(settings.data_dir)
    raise CliError(f"no xmail data in {where} (looked for {os.path.join(where, 'index')}): "
                   "name the server's with --data DIR or --config FILE, or create a new one with --init")


def _run_as_data_owner(settings: Any) -> None:
    """Create files as the daemon would: private, and owned by the data_dir's
    owner.  `xmailctl` run as root would otherwise leave root-owned Maildirs
    and index files that a daemon running as `xmail` cannot write."""
    os.umask(os.umask(0o077) | 0o077)
    if os.geteuid() != 0:
        return
    try:
        st = os.stat(settings.data_dir)
    except FileNotFoundError:
        return
    if st.st_uid != 0:
        os.setgroups([])
        os.setgid(st.st_gid)
        os.setuid(st.st_uid)


def main(argv: Sequence[str] | None = None, *, stdin: TextIO | None = None, stdout: TextIO | None = None,
         stderr: TextIO | None = None) -> int:
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    stderr = stderr or sys.stderr
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings, may_create = _settings(args)
        _check_data_dir(settings, may_create, args.init)
    except (ConfigError, CliError) as e:
        stderr.write(f"xmailctl: {e}\n")
        return 1
    _run_as_data_owner(settings)
    ctx = CliContext(settings, stdout, stderr, stdin)
    try:
        status = run_recorded(ctx, args, argv)  # the admin log (xmail.ops.admin)
    except (CliError, DirectoryError, StoreError) as e:
        ctx.warn(str(e))
        return 1
    except KeyboardInterrupt:
        ctx.warn("interrupted")
        return 130
    finally:
        ctx.close()
    stdout.flush()
    return status or 0
