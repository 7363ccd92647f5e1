# -*- test-case-name: tests.test_cli -*-
"""`xmailctl`: the admin command line (DESIGN.md "xmailctl").

    xmailctl [--config FILE | --data DIR] GROUP COMMAND ...

Without --config or --data the config named by $XMAIL_CONFIG is used, else
the embedded default (data in ./xmail-data), like `twistd xmail`.

It works while the daemon runs: it opens the same LMDB environment (LMDB's
lock file serialises writers across processes) and writes synchronously in
its own thread; the daemon reads the directory afresh on every lookup and
the store notices index changes made elsewhere.  Mailbox operations use the
store in synchronous mode (`MailStore(env, settings, directory,
reactor=None)`), whose Deferreds have already fired when they are returned.

Output meant for scripts is one record a line, fields separated by a tab.
Errors go to stderr with exit status 1 (2 for a usage error).

Other packages add command groups (`queue`, `log`, `stats`, `dns`, ...)
without editing this file: list the module in EXTENSION_MODULES and give it

    def register(subparsers: argparse._SubParsersAction) -> None:
        group = subparsers.add_parser("queue", help="...")
        commands = group.add_subparsers(dest="command", required=True)
        show = commands.add_parser("list", help="...")
        show.set_defaults(func=list_queue)

    def list_queue(ctx: xmail.cli.CliContext, args: argparse.Namespace) -> int | None:
        for item in ...:
            ctx.out(item.id, item.sender)         # one tab-separated record a line
        # raise xmail.cli.CliError("message") for an error (stderr, exit 1)

`ctx` opens the index environment, directory and store on first use
(`ctx.env`, `ctx.directory`, `ctx.store`) and `ctx.wait(deferred)` returns
the result of an already-fired Deferred.  A listed module that does not
exist yet is skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import getpass
import importlib
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any, TextIO

from xmail.auth.interfaces import DirectoryError
from xmail.config import ConfigError, Settings, load

# Modules that add command groups with register(subparsers); see above.
EXTENSION_MODULES: list[str] = ["xmail.queue.cli", "xmail.autoconfig.cli", "xmail.ops.cli"]


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
            from xmail.db.environment import IndexEnvironment

            env = IndexEnvironment(self.settings.path("index"))
            env.open()
            self._env = env
        return self._env

    @property
    def directory(self) -> Any:
        if self._directory is None:
            from xmail.auth.directory import Directory

            self._directory = Directory(self.env, self.settings)
        return self._directory

    @property
    def store(self) -> Any:
        if self._store is None:
            try:
                from xmail.store.mailstore import MailStore
            except ImportError as e:
                raise CliError(f"the mail store is not available: {e}") from None
            self._store = MailStore(self.env, self.settings, self.directory, reactor=None)
        return self._store

    def out(self, *fields: Any) -> None:
        """One record: fields joined by tabs, control characters escaped."""
        self.stdout.write("\t".join(_field(f) for f in fields) + "\n")

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


def _field(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = str(value)
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _time(seconds: float) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


# -- passwords ----------------------------------------------------------------


def _read_password(ctx: CliContext, args: argparse.Namespace) -> str:
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


# -- domain -----------------------------------------------------------------------


def domain_add(ctx: CliContext, args: argparse.Namespace) -> None:
    ctx.directory.add_domain(args.domain)


def domain_remove(ctx: CliContext, args: argparse.Namespace) -> None:
    ctx.directory.remove_domain(args.domain)


def domain_list(ctx: CliContext, args: argparse.Namespace) -> None:
    for domain, alias_of in ctx.directory.list_domains():
        if alias_of:
            ctx.out(domain, "alias-of", alias_of)
        else:
            ctx.out(domain)


def domain_alias(ctx: CliContext, args: argparse.Namespace) -> None:
    ctx.directory.add_alias_domain(args.alias_domain, args.to)


# -- user -----------------------------------------------------------------------------


def user_add(ctx: CliContext, args: argparse.Namespace) -> None:
    from xmail.auth.directory import normalize_address

    # Refuse a bad or existing address before asking for a password.
    address = normalize_address(args.address)
    if ctx.directory.resolve(address) is not None:
        raise CliError(f"{address} already exists")
    password = None
    if args.password_hash is None and not args.no_password:
        password = _read_password(ctx, args)
    record = ctx.directory.add_user(address, password=password, password_hash=args.password_hash,
                                    quota_bytes=args.quota_bytes, quota_messages=args.quota_messages)
    try:
        store = ctx.store
    except CliError as e:
        ctx.warn(f"{e}; the mailbox is created at first login or delivery")
        return
    ctx.wait(store.provision(record.address))


def user_passwd(ctx: CliContext, args: argparse.Namespace) -> None:
    if args.password_hash is not None:
        ctx.directory.set_password_hash(args.address, args.password_hash)
        return
    if ctx.directory.user(args.address) is None:
        raise CliError(f"no such user {args.address}")
    ctx.directory.set_password(args.address, _read_password(ctx, args))


def user_enable(ctx: CliContext, args: argparse.Namespace) -> None:
    ctx.directory.set_enabled(args.address, True)


def user_disable(ctx: CliContext, args: argparse.Namespace) -> None:
    ctx.directory.set_enabled(args.address, False)


def user_remove(ctx: CliContext, args: argparse.Namespace) -> None:
    address = args.address.strip().lower()
    for alias in ctx.directory.remove_user(address):
        ctx.warn(f"removed alias {alias}")
    local, _, domain = address.rpartition("@")
    path = ctx.settings.path("mail", domain, local)
    if os.path.isdir(path):
        ctx.warn(f"the mail of {address} is kept in {path}")


def user_show(ctx: CliContext, args: argparse.Namespace) -> None:
    # Any login form shows its user.
    info = ctx.directory.user_show(ctx.directory.resolve(args.address) or args.address)
    limits = ctx.settings.limits
    ctx.out("address", info["address"])
    ctx.out("enabled", info["enabled"])
    ctx.out("created", _time(info["created"]))
    ctx.out("password_scheme", info["password_scheme"])
    for name in ("quota_bytes", "quota_messages"):
        value = info[name]
        ctx.out(name, f"{getattr(limits, name)} (default)" if value is None else value)
    ctx.out("aliases", ",".join(info["aliases"]))
    for key, value in sorted(info["settings"].items()):
        ctx.out(f"setting.{key}", value)
    try:
        usage = ctx.store.mailbox(info["address"]).quota()
    except Exception:  # not provisioned yet, or no store: nothing to show
        return
    ctx.out("bytes_used", usage.bytes_used)
    ctx.out("messages_used", usage.messages_used)


def user_list(ctx: CliContext, args: argparse.Namespace) -> None:
    for record in ctx.directory.list_users(args.domain):
        ctx.out(record.address, "enabled" if record.enabled else "disabled")


def _parse_quota(key: str, value: str) -> int | None:
    if value.lower() in ("default", ""):
        return None
    if value.lower() == "unlimited":
        return 0
    try:
        number = int(value)
    except ValueError:
        raise CliError(f"{key} must be a number, 'unlimited' or 'default', not {value!r}") from None
    if number < 0:
        raise CliError(f"{key} must not be negative")
    return number


def user_set(ctx: CliContext, args: argparse.Namespace) -> None:
    if ctx.directory.user(args.address) is None:
        raise CliError(f"no such user {args.address}")
    changes = []
    for item in args.settings:
        key, eq, value = item.partition("=")
        if not eq or not key:
            raise CliError(f"expected KEY=VALUE, not {item!r}")
        changes.append((key.strip().lower(), value))
    for key, value in changes:
        if key in ("quota_bytes", "quota_messages"):
            ctx.directory.set_quota(args.address, **{key: _parse_quota(key, value)})
        else:
            ctx.directory.set_setting(args.address, key, value)


# -- alias ---------------------------------------------------------------------------------


def alias_add(ctx: CliContext, args: argparse.Namespace) -> None:
    ctx.directory.add_alias(args.alias, args.target)


def alias_remove(ctx: CliContext, args: argparse.Namespace) -> None:
    ctx.directory.remove_alias(args.alias)


def alias_list(ctx: CliContext, args: argparse.Namespace) -> None:
    for alias, target in ctx.directory.list_aliases():
        ctx.out(alias, target)


# -- recycle and reindex ---------------------------------------------------------------------


def _canonical_user(ctx: CliContext, address: str) -> str:
    canonical = ctx.directory.resolve(address)
    if canonical is None:
        raise CliError(f"no such user {address}")
    return canonical


def recycle_list(ctx: CliContext, args: argparse.Namespace) -> None:
    address = _canonical_user(ctx, args.address)
    for item in ctx.store.mailbox(address).recycle_list():
        ctx.out(item.uid, item.original_folder, _time(item.expunged_at), _time(item.expires_at),
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
        return
    for recycle_uid, folder, new_uid in ctx.wait(mailbox.recycle_restore(uids)):
        ctx.out(recycle_uid, folder, new_uid)


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


# -- parser ----------------------------------------------------------------------------------


def _uid(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a UID: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"not a UID: {text!r}")
    return value


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative: {text!r}")
    return value


def _group(subparsers: Any, name: str, help_text: str) -> Any:
    parser = subparsers.add_parser(name, help=help_text, description=help_text)
    return parser.add_subparsers(dest="command", metavar="COMMAND", required=True)


def _command(commands: Any, name: str, func: Callable[..., Any], help_text: str) -> argparse.ArgumentParser:
    parser = commands.add_parser(name, help=help_text, description=help_text)
    parser.set_defaults(func=func)
    return parser


def _password_options(parser: argparse.ArgumentParser, allow_none: bool) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--password-stdin", action="store_true",
                        help="read the password from the first line of standard input")
    source.add_argument("--password-hash", metavar="HASH",
                        help="store an existing hash (argon2, bcrypt, sha512/256/md5-crypt, "
                             "Dovecot {SCHEME}...); legacy ones are upgraded at the next login")
    if allow_none:
        source.add_argument("--no-password", action="store_true",
                            help="no password: the user receives mail but cannot log in")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="xmailctl", description="Administer an xmail server (works while it runs).")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--config", metavar="FILE", help="TOML config file (default: $XMAIL_CONFIG, "
                                                        "else the embedded default)")
    where.add_argument("--data", metavar="DIR", help="data directory (instead of a config file)")
    subparsers = parser.add_subparsers(dest="group", metavar="GROUP", required=True)

    domain = _group(subparsers, "domain", "hosted domains and alias domains")
    for name, func, text in (("add", domain_add, "host a domain"),
                             ("remove", domain_remove, "stop hosting a domain (it must have no users, "
                                                       "aliases or alias domains left)")):
        _command(domain, name, func, text).add_argument("domain", metavar="DOMAIN")
    _command(domain, "list", domain_list, "list domains (alias domains with their primary)")
    alias_domain = _command(domain, "alias", domain_alias,
                            "make ALIAS_DOMAIN receive for every user and alias of DOMAIN")
    alias_domain.add_argument("alias_domain", metavar="ALIAS_DOMAIN")
    alias_domain.add_argument("--to", metavar="DOMAIN", required=True)

    user = _group(subparsers, "user", "users")
    add = _command(user, "add", user_add, "add a user and create its mailbox")
    add.add_argument("address", metavar="ADDRESS")
    _password_options(add, allow_none=True)
    add.add_argument("--quota-bytes", type=_count, metavar="N", help="0 = unlimited")
    add.add_argument("--quota-messages", type=_count, metavar="N", help="0 = unlimited")
    passwd = _command(user, "passwd", user_passwd, "change a user's password")
    passwd.add_argument("address", metavar="ADDRESS")
    _password_options(passwd, allow_none=False)
    for name, func, text in (("enable", user_enable, "allow a user to log in"),
                             ("disable", user_disable, "refuse a user's logins (mail is still received)"),
                             ("remove", user_remove, "remove a user and its aliases (mail stays on disk)"),
                             ("show", user_show, "show a user, one KEY<TAB>VALUE a line")):
        _command(user, name, func, text).add_argument("address", metavar="ADDRESS")
    listing = _command(user, "list", user_list, "list users: ADDRESS<TAB>enabled|disabled")
    listing.add_argument("domain", metavar="DOMAIN", nargs="?")
    setting = _command(user, "set", user_set,
                       "set per-user settings (e.g. send_save=off; quota_bytes=N|unlimited|default)")
    setting.add_argument("address", metavar="ADDRESS")
    setting.add_argument("settings", metavar="KEY=VALUE", nargs="+")

    alias = _group(subparsers, "alias", "address aliases of users")
    add_alias = _command(alias, "add", alias_add, "deliver ALIAS_ADDRESS to TARGET_ADDRESS's mailbox")
    add_alias.add_argument("alias", metavar="ALIAS_ADDRESS")
    add_alias.add_argument("target", metavar="TARGET_ADDRESS")
    _command(alias, "remove", alias_remove, "remove an alias").add_argument("alias", metavar="ALIAS_ADDRESS")
    _command(alias, "list", alias_list, "list aliases: ALIAS<TAB>TARGET")

    recycle = _group(subparsers, "recycle", "expunged messages kept in Recycle")
    _command(recycle, "list", recycle_list,
             "list: UID<TAB>FOLDER<TAB>EXPUNGED<TAB>EXPIRES<TAB>SIZE<TAB>SUBJECT"
             ).add_argument("address", metavar="ADDRESS")
    restore = _command(recycle, "restore", recycle_restore,
                       "put messages back where they were: UID<TAB>FOLDER<TAB>NEW_UID")
    restore.add_argument("address", metavar="ADDRESS")
    which = restore.add_mutually_exclusive_group(required=True)
    which.add_argument("--all", action="store_true", help="every message in Recycle")
    which.add_argument("uids", metavar="UID", type=_uid, nargs="*", default=[])

    reindex_parser = subparsers.add_parser(
        "reindex", help="rebuild the index from the Maildir (all users, or one)")
    reindex_parser.add_argument("address", metavar="ADDRESS", nargs="?")
    reindex_parser.set_defaults(func=reindex)

    for module_name in EXTENSION_MODULES:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as e:
            if e.name is not None and module_name.startswith(e.name):
                continue  # that capability is not installed yet
            raise
        module.register(subparsers)
    return parser


def _settings(args: argparse.Namespace) -> Settings:
    if args.data:
        settings = Settings()
        return dataclasses.replace(settings, server=dataclasses.replace(settings.server,
                                                                        data_dir=args.data))
    return load(args.config or os.environ.get("XMAIL_CONFIG") or None)


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
        settings = _settings(args)
    except ConfigError as e:
        stderr.write(f"xmailctl: {e}\n")
        return 1
    _run_as_data_owner(settings)
    ctx = CliContext(settings, stdout, stderr, stdin)
    from xmail.ops.admin import run_recorded
    from xmail.store.interfaces import StoreError

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


if __name__ == "__main__":
    sys.exit(main())
