# -*- test-case-name: tests.test_cli -*-
"""What every `xmailctl` command handler gets, and the helpers they share.

A handler is `func(ctx: CliContext, args: argparse.Namespace) -> int | None`;
it writes records with `ctx.out(...)` (one tab-separated record a line),
confirms a change with `ctx.done(...)` (one line), and raises CliError for
an error (stderr, exit status 1).  `ctx` opens the index environment,
directory and store on first use (`ctx.env`, `ctx.directory`, `ctx.store`)
and `ctx.wait(deferred)` returns the result of an already-fired Deferred.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import getpass
from collections.abc import Callable
from typing import Any, TextIO

from xmail.auth.directory import Directory
from xmail.config import Settings
from xmail.db.environment import IndexEnvironment
from xmail.store.mailstore import MailStore


class CliError(Exception):
    """Printed to stderr as "xmailctl: MESSAGE", exit status 1."""


class CliContext:
    """What a command handler gets: settings, and the index, directory and
    store opened on first use (so `--help` and config errors need none)."""

    def __init__(self, settings: Settings, stdout: TextIO, stderr: TextIO, stdin: TextIO):
        self.settings = settings
        self.stdout = stdout
        self.stderr = stderr
        self.stdin = stdin
        self._env: Any = None
        self._directory: Any = None
        self._store: Any = None

    @property
    def env(self) -> Any:
        if self._env is None:
            env = IndexEnvironment(self.settings.path("index"))
            env.open()
            self._env = env
        return self._env

    @property
    def directory(self) -> Any:
        if self._directory is None:
            self._directory = Directory(self.env, self.settings)
        return self._directory

    @property
    def store(self) -> Any:
        if self._store is None:
            self._store = MailStore(self.env, self.settings, self.directory, reactor=None)
        return self._store

    def out(self, *fields: Any) -> None:
        """One record: fields joined by tabs, control characters escaped."""
        self.stdout.write("\t".join(field_text(f) for f in fields) + "\n")

    def done(self, message: str) -> None:
        """The one line that confirms a change (issue 16: a change that
        printed nothing left the operator guessing)."""
        self.stdout.write(message + "\n")

    def warn(self, message: str) -> None:
        self.stderr.write(f"xmailctl: {message}\n")

    @staticmethod
    def wait(result: Any) -> Any:
        """The result of a Deferred that has already fired (the store in
        synchronous mode), or result itself if it is not a Deferred."""
        from twisted.internet.defer import Deferred
        from twisted.python.failure import Failure

        if not isinstance(result, Deferred):
            return result
        outcome: list[Any] = []
        result.addBoth(outcome.append)
        if not outcome:
            raise CliError("internal error: a store operation did not complete synchronously")
        value = outcome[0]
        if isinstance(value, Failure):
            value.raiseException()
        return value

    def close(self) -> None:
        if self._store is not None and hasattr(self._store, "stop"):
            try:
                self.wait(self._store.stop())
            except Exception as e:  # closing must not hide the command's own result
                self.warn(f"closing the store: {e}")
        if self._env is not None:
            self._env.close()


def field_text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def utc_time(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def read_password(ctx: CliContext, args: argparse.Namespace) -> str:
    if args.password_stdin:
        line = ctx.stdin.readline()
        password = line.rstrip("\r\n")
        if not password:
            raise CliError("no password on standard input")
        return password
    if not ctx.stdin.isatty():
        raise CliError("standard input is not a terminal: use --password-stdin")
    first = getpass.getpass("Password: ")
    second = getpass.getpass("Password again: ")
    if first != second:
        raise CliError("the passwords do not match")
    if not first:
        raise CliError("empty password")
    return first


# -- argument types and parser helpers ---------------------------------------------------


def uid_argument(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UID: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a UID: {text!r}")
    return value


def count_argument(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def group(subparsers: Any, name: str, help_text: str) -> Any:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest="command", metavar="COMMAND", required=True)


def command(commands: Any, name: str, func: Callable[..., Any], help_text: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=func)
    return parser


def password_options(parser: argparse.ArgumentParser, allow_none: bool) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    source.add_argument("--password-hash", metavar="HASH",
                        help="store an existing hash (argon2, bcrypt, sha512/256/md5-crypt, "
                             "Dovecot {SCHEME}...); legacy ones are upgraded at the next login")
    if allow_none:
        source.add_argument("--no-password", action="store_true",
                            help="no password: the user receives mail but cannot log in")


class TableOutput:
    """Rows of a table: tab-separated (field_text escaping), or with --csv
    RFC 4180 rows after a header row; a CSV text cell a spreadsheet would
    run as a formula (= + - @) gets a leading apostrophe."""

    def __init__(self, ctx: Any, as_csv: bool, header: tuple[str, ...], *, tsv_header: bool = False):
        self.ctx = ctx
        self.writer = csv.writer(ctx.stdout, lineterminator="\r\n") if as_csv else None
        if self.writer is not None:
            self.writer.writerow(header)
        elif tsv_header:
            ctx.out(*header)

    def row(self, values: list[Any]) -> None:
        if self.writer is None:
            self.ctx.out(*values)
        else:
            self.writer.writerow([_csv_cell(v) for v in values])


def _csv_cell(value: Any) -> Any:
    if value is None:
        return ""
    if not isinstance(value, str):
        return value
    # Control characters escaped as in the tab-separated output, so that no
    # cell spans lines even for a reader that splits on newlines.
    value = "".join(c if c.isprintable() else repr(c)[1:-1] for c in value)
    if value[:1] in ("=", "+", "-", "@"):
        return "'" + value
    return value


def hosted_domain(ctx: Any, text: str) -> str:
    """A hosted or alias domain, normalised; CliError naming it otherwise."""
    from xmail.autoconfig.model import AddressError, parse_domain

    try:
        domain = parse_domain(text)
    except AddressError:
        raise CliError(f"{text!r} is not a domain name") from None
    if not ctx.directory.is_local_domain(domain):
        raise CliError(f"{domain} is not a hosted domain (add it with `xmailctl domain add {domain}`)")
    return domain
