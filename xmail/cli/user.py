# -*- test-case-name: tests.test_cli -*-
"""`xmailctl user ...`: add, passwd, enable, disable, remove, show, list, set."""

from __future__ import annotations

import argparse
import os
from typing import Any

from xmail.auth.directory import normalize_address
from xmail.cli.context import (
    CliContext,
    CliError,
    command,
    count_argument,
    group,
    password_options,
    read_password,
    utc_time,
)
from xmail.cli.sieve import filter_state
from xmail.filter.policy import USER_KEYS, check_setting
from xmail.sieve.storage import SieveScripts


def register(subparsers: Any) -> None:
    user = group(subparsers, "user", "users")
    add = command(user, "add", user_add, "add a user and create its mailbox")
    add.add_argument("address", metavar="ADDRESS")
    password_options(add, allow_none=True)
    add.add_argument("--quota-bytes", type=count_argument, metavar="N", help="0 = unlimited")
    add.add_argument("--quota-messages", type=count_argument, metavar="N", help="0 = unlimited")
    passwd = command(user, "passwd", user_passwd, "change a user's password")
    passwd.add_argument("address", metavar="ADDRESS")
    password_options(passwd, allow_none=False)
    for name, func, text in (("enable", user_enable, "allow a user to log in"),
                             ("disable", user_disable, "refuse a user's logins (mail is still received)"),
                             ("remove", user_remove, "remove a user and its aliases (mail stays on disk)"),
                             ("show", user_show, "show a user, one KEY<TAB>VALUE a line")):
        command(user, name, func, text).add_argument("address", metavar="ADDRESS")
    listing = command(user, "list", user_list, "list users: ADDRESS<TAB>enabled|disabled")
    listing.add_argument("domain", metavar="DOMAIN", nargs="?")
    setting = command(user, "set", user_set,
                      "set per-user settings (e.g. send_save=off; quota_bytes=N|unlimited|default)")
    setting.add_argument("address", metavar="ADDRESS")
    setting.add_argument("settings", metavar="KEY=VALUE", nargs="+")


def user_add(ctx: CliContext, args: argparse.Namespace) -> None:
    # Refuse a bad or existing address before asking for a password.
    address = normalize_address(args.address)
    if ctx.directory.resolve(address) is not None:
        raise CliError(f"{address} already exists")
    password = None
    if args.password_hash is None and not args.no_password:
        password = read_password(ctx, args)
    record = ctx.directory.add_user(address, password=password, password_hash=args.password_hash,
                                    quota_bytes=args.quota_bytes, quota_messages=args.quota_messages)
    ctx.wait(ctx.store.provision(record.address))
    ctx.done(f"user {record.address} added")


def user_passwd(ctx: CliContext, args: argparse.Namespace) -> None:
    if args.password_hash is not None:
        ctx.directory.set_password_hash(args.address, args.password_hash)
    else:
        if ctx.directory.user(args.address) is None:
            raise CliError(f"no such user {args.address}")
        ctx.directory.set_password(args.address, read_password(ctx, args))
    ctx.done(f"password of {args.address} changed")


def user_enable(ctx: CliContext, args: argparse.Namespace) -> None:
    ctx.directory.set_enabled(args.address, True)
    ctx.done(f"user {args.address} enabled")


def user_disable(ctx: CliContext, args: argparse.Namespace) -> None:
    ctx.directory.set_enabled(args.address, False)
    ctx.done(f"user {args.address} disabled")


def user_remove(ctx: CliContext, args: argparse.Namespace) -> None:
    address = args.address.strip().lower()
    for alias in ctx.directory.remove_user(address):
        ctx.warn(f"removed alias {alias}")
    for name in SieveScripts(ctx.env).remove_owner(address):
        ctx.warn(f"removed filter script {name}")
    local, _, domain = address.rpartition("@")
    path = ctx.settings.path("mail", domain, local)
    if os.path.isdir(path):
        ctx.warn(f"the mail of {address} is kept in {path}")
    ctx.done(f"user {address} removed")


def user_show(ctx: CliContext, args: argparse.Namespace) -> None:
    # Any login form shows its user.
    info = ctx.directory.user_show(ctx.directory.resolve(args.address) or args.address)
    limits = ctx.settings.limits
    ctx.out("address", info["address"])
    ctx.out("enabled", info["enabled"])
    ctx.out("created", utc_time(info["created"]))
    ctx.out("password_scheme", info["password_scheme"])
    for name in ("quota_bytes", "quota_messages"):
        value = info[name]
        ctx.out(name, f"{getattr(limits, name)} (default)" if value is None else value)
    ctx.out("aliases", ",".join(info["aliases"]))
    for key, value in sorted(info["settings"].items()):
        ctx.out(f"setting.{key}", value)
    for key, value in filter_state(ctx, info["address"]):
        ctx.out(key, value)
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
        elif key in USER_KEYS:
            try:
                ctx.directory.set_setting(args.address, key, check_setting(USER_KEYS, key, value))
            except ValueError as e:
                raise CliError(str(e)) from None
        else:
            ctx.directory.set_setting(args.address, key, value)
    ctx.done(f"user {args.address}: {' '.join(args.settings)}")
