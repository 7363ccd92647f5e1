# -*- test-case-name: tests.test_cli_sieve -*-
"""`xmailctl sieve|vacation|forward`: filter rules (issue 18).

    xmailctl sieve put (--user U | --domain D --before|--after) [NAME] [FILE]
    xmailctl sieve get|remove (--user U | --domain D --before|--after) [NAME]
    xmailctl sieve list (--user U | --domain D --before|--after) [--csv]
    xmailctl sieve activate --user U NAME
    xmailctl vacation set U --days N --subject S    (the reply's text on stdin)
    xmailctl vacation off U
    xmailctl forward set U TARGET [--keep]
    xmailctl forward off U

A user's scripts belong to the user's address (an alias given as U is
resolved to it); a domain's to `before:D` or `after:D` (they run for the
domain's users before and after each user's own script; an alias domain's
users are the primary's, so a domain's scripts are set on the primary).

`put` reads FILE, or standard input when FILE is absent or "-", checks it
with the engine (`line N: ...` and a non-zero exit when it does not
compile, or is over a limit) and stores it.  NAME defaults to FILE's stem,
or to "main" (a user) / "before" / "after" (a domain) from standard input.
With only one word after the options it is FILE when it is "-" or an
existing file, else NAME.  A user's first script is activated when the
user has no active one; `activate` switches (domain scripts all run:
there is nothing to activate).  `remove` removes even the active script.

`vacation` and `forward` write ordinary Sieve (xmail.sieve.managed) as the
user's scripts `xmail-vacation` and `xmail-forward`, which delivery runs
after the user's active script: one engine for everything.  The running
daemon reads scripts from the index per message, so a change applies to
the next message.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import Any

from xmail import addresses
from xmail.cli.context import CliContext, CliError, TableOutput, command, group
from xmail.sieve.interfaces import (
    AFTER,
    BEFORE,
    MANAGED_PREFIX,
    NoSuchScript,
    SieveQuotaError,
    SieveScriptError,
    domain_owner,
)
from xmail.sieve.managed import (
    FORWARD,
    MAX_BODY,
    MAX_DAYS,
    MIN_DAYS,
    VACATION,
    ManagedScriptError,
    check_address,
    check_body,
    forward_script,
    vacation_script,
)
from xmail.sieve.storage import SieveScripts

LIST_HEADER = ("name", "active")
STDIN = "-"
USER_DEFAULT_NAME = "main"


def register(subparsers: Any) -> None:
    sieve = group(subparsers, "sieve", "Sieve filter scripts of users and domains")
    for name, func, text in (
            ("put", sieve_put, "check a script and store it (FILE, or standard input)"),
            ("get", sieve_get, "print a script"),
            ("list", sieve_list, "list scripts: name, active (whether delivery runs it)"),
            ("activate", sieve_activate, "make a user's script the active one"),
            ("remove", sieve_remove, "remove a script (even the active one)")):
        parser = command(sieve, name, func, text)
        _owner_options(parser, user_only=name == "activate")
        if name == "put":
            parser.usage = ("xmailctl sieve put [-h] (--user ADDRESS | --domain DOMAIN --before|--after) "
                            "[NAME] [FILE]")
            parser.add_argument("words", nargs="*", metavar="[NAME] [FILE]",
                                help="NAME defaults to FILE's stem (or main / before / after); "
                                     "FILE absent or - reads standard input")
        elif name == "list":
            parser.add_argument("--csv", action="store_true", help="CSV with a header row")
        elif name == "activate":
            parser.add_argument("name", metavar="NAME")
        else:
            parser.add_argument("name", metavar="NAME", nargs="?",
                                help="default: main (a user) / before / after (a domain)")

    vacation = group(subparsers, "vacation", "automatic replies (RFC 5230 vacation, as a Sieve script)")
    setting = command(vacation, "set", vacation_set,
                      "answer a user's mail automatically; the reply's text is read from standard input")
    setting.add_argument("user", metavar="ADDRESS")
    setting.add_argument("--days", type=_days, required=True, metavar="N",
                         help=f"answer each sender at most once in N days ({MIN_DAYS}..{MAX_DAYS})")
    setting.add_argument("--subject", required=True, metavar="TEXT", help="the reply's subject")
    command(vacation, "off", vacation_off, "stop a user's automatic replies").add_argument(
        "user", metavar="ADDRESS")

    forward = group(subparsers, "forward", "forwarding of a user's mail (a Sieve redirect)")
    setting = command(forward, "set", forward_set, "forward a user's incoming mail to TARGET")
    setting.add_argument("user", metavar="ADDRESS")
    setting.add_argument("target", metavar="TARGET")
    setting.add_argument("--keep", action="store_true", help="keep a copy in the user's mailbox too")
    command(forward, "off", forward_off, "stop forwarding a user's mail").add_argument(
        "user", metavar="ADDRESS")


def _owner_options(parser: argparse.ArgumentParser, *, user_only: bool) -> None:
    if user_only:
        parser.add_argument("--user", metavar="ADDRESS", required=True)
        return
    owner = parser.add_mutually_exclusive_group(required=True)
    owner.add_argument("--user", metavar="ADDRESS")
    owner.add_argument("--domain", metavar="DOMAIN")
    position = parser.add_mutually_exclusive_group()
    position.add_argument("--before", dest="position", action="store_const", const=BEFORE,
                          help="the domain's scripts run before each user's own")
    position.add_argument("--after", dest="position", action="store_const", const=AFTER,
                          help="the domain's scripts run after each user's own")


def _days(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of days: {text!r}") from None
    if not MIN_DAYS <= value <= MAX_DAYS:
        # RFC 5230 §4.1: at least 1.
        raise argparse.ArgumentTypeError(f"must be from {MIN_DAYS} to {MAX_DAYS}: {text!r}")
    return value


# -- owners ------------------------------------------------------------------------------


def _user(ctx: CliContext, text: str) -> str:
    """The canonical address of the user `text` names (an alias too)."""
    try:
        address = addresses.normalize_address(text)
    except addresses.AddressError as e:
        raise CliError(f"{text!r} is not an address: {e}") from None
    user = ctx.directory.resolve(address)
    if user is None or ctx.directory.user(user) is None:
        raise CliError(f"no such user {address}")
    return user


def _primary_domain(ctx: CliContext, text: str) -> str:
    try:
        domain = addresses.normalize_domain(text)
    except addresses.AddressError as e:
        raise CliError(f"{text!r} is not a domain name: {e}") from None
    alias_of = dict(ctx.directory.list_domains())
    if domain not in alias_of:
        raise CliError(f"{domain} is not a hosted domain")
    if alias_of[domain]:
        # Delivery looks scripts up under the user's own (primary) domain.
        raise CliError(f"{domain} is an alias of {alias_of[domain]}: set the scripts on {alias_of[domain]}")
    return domain


class _Owner:
    """Whose scripts a command works on: `key` as the store knows it,
    `shown` for messages, `default` the NAME when none is given."""

    def __init__(self, key: str, shown: str, default: str, user: bool):
        self.key, self.shown, self.default, self.user = key, shown, default, user


def _owner(ctx: CliContext, args: argparse.Namespace) -> _Owner:
    position = getattr(args, "position", None)
    if getattr(args, "domain", None) is not None:
        if position is None:
            raise CliError("--domain needs --before or --after")
        domain = _primary_domain(ctx, args.domain)
        return _Owner(domain_owner(domain, position), f"domain {domain} ({position})", position, False)
    if position is not None:
        raise CliError("--before and --after go with --domain")
    user = _user(ctx, args.user)
    return _Owner(user, f"user {user}", USER_DEFAULT_NAME, True)


def _scripts(ctx: CliContext) -> SieveScripts:
    return SieveScripts(ctx.env)  # xmailctl writes synchronously


def _name(scripts: SieveScripts, text: str) -> str:
    if not scripts.valid_name(text):
        raise CliError(f"{text!r} is not a script name (RFC 5804 §1.6: 1 to 128 characters, no control "
                       "characters)")
    return text


# -- reading input -----------------------------------------------------------------------


def _read_bounded(stream: Any, limit: int, what: str) -> bytes:
    """At most `limit` octets of `stream` (binary, or text encoded as
    UTF-8), refusing more: an oversized input is never read whole."""
    data = getattr(stream, "buffer", stream).read(limit + 1)
    if isinstance(data, str):  # a text stream without a binary one under it
        data = data.encode("utf-8", "surrogateescape")
    if len(data) > limit:
        raise CliError(f"{what} is larger than {limit} octets")
    return data


def _put_source(ctx: CliContext, words: list[str], default: str) -> tuple[str, bytes]:
    """(NAME, the script's octets) from put's words."""
    if len(words) > 2:
        raise CliError("usage: xmailctl sieve put (--user U | --domain D --before|--after) [NAME] [FILE]")
    name: str | None
    if len(words) == 2:
        name, path = words
    elif len(words) == 1 and (words[0] == STDIN or os.path.isfile(words[0])):
        name, path = None, words[0]
    else:
        name, path = (words[0] if words else None), STDIN
    limit = SieveScripts.max_script_size
    if path == STDIN:
        if ctx.stdin.isatty():
            raise CliError("no FILE given and standard input is a terminal: "
                           "name a file or pipe the script in")
        return name or default, _read_bounded(ctx.stdin, limit, "the script")
    try:
        with open(path, "rb") as f:
            data = _read_bounded(f, limit, path)
    except OSError as e:
        raise CliError(f"cannot read {path}: {e.strerror}") from None
    return name or Path(path).stem or default, data


# -- sieve ---------------------------------------------------------------------------------


def sieve_put(ctx: CliContext, args: argparse.Namespace) -> None:
    owner = _owner(ctx, args)
    scripts = _scripts(ctx)
    name, data = _put_source(ctx, args.words, owner.default)
    name = _name(scripts, name)
    if owner.user and name.startswith(MANAGED_PREFIX):
        raise CliError(f"names starting with {MANAGED_PREFIX} belong to `xmailctl vacation` and "
                       "`xmailctl forward`")
    _store(ctx, scripts, owner.key, name, data)
    note = ""
    if owner.user and scripts.active(owner.key) is None:
        scripts.activate(owner.key, name)
        note = " and activated (the user had no active script)"
    ctx.done(f"sieve {name} stored for {owner.shown}{note}")


def _store(ctx: CliContext, scripts: SieveScripts, owner: str, name: str, data: bytes) -> None:
    """Compile, then store: a script that does not compile is refused
    here, never found at delivery."""
    refused = scripts.space_for(owner, name, len(data))
    if refused is not None:
        raise CliError(f"{refused.code}: {refused}")
    try:
        scripts.check(data)
    except SieveScriptError as e:
        raise CliError(f"{name}: {e}") from None
    try:
        scripts.put(owner, name, data.decode("utf-8"))
    except SieveQuotaError as e:
        raise CliError(f"{e.code}: {e}") from None


def sieve_get(ctx: CliContext, args: argparse.Namespace) -> None:
    owner = _owner(ctx, args)
    name = args.name or owner.default
    text = _scripts(ctx).get(owner.key, name)
    if text is None:
        raise CliError(f"{owner.shown} has no script {name!r}")
    # The text as stored, byte for byte (CRLF line ends stay): it can be
    # put back unchanged.
    ctx.stdout.write(text)


def sieve_list(ctx: CliContext, args: argparse.Namespace) -> None:
    owner = _owner(ctx, args)
    out = TableOutput(ctx, args.csv, LIST_HEADER)
    for name, active in _scripts(ctx).list(owner.key):
        # "active": whether delivery runs it -- a user's active script and
        # managed scripts (SieveScripts.chain), every script of a domain.
        runs = active or not owner.user or name.startswith(MANAGED_PREFIX)
        out.row([name, "yes" if runs else "no"])


def sieve_activate(ctx: CliContext, args: argparse.Namespace) -> None:
    user = _user(ctx, args.user)
    if args.name.startswith(MANAGED_PREFIX):
        raise CliError(f"{args.name} runs by itself after the active script; it is not activated")
    try:
        _scripts(ctx).activate(user, args.name)
    except NoSuchScript:
        raise CliError(f"user {user} has no script {args.name!r}") from None
    ctx.done(f"sieve {args.name} active for user {user}")


def sieve_remove(ctx: CliContext, args: argparse.Namespace) -> None:
    owner = _owner(ctx, args)
    name = args.name or owner.default
    scripts = _scripts(ctx)
    was_active = owner.user and scripts.active(owner.key) == name
    if not scripts.remove_any(owner.key, name):
        raise CliError(f"{owner.shown} has no script {name!r}")
    ctx.done(f"sieve {name} removed for {owner.shown}"
             + (" (it was active: the user has no active script now)" if was_active else ""))


sieve_get.read_only = True  # type: ignore[attr-defined]  # no admin log line (xmail.ops.admin)
sieve_list.read_only = True  # type: ignore[attr-defined]


# -- vacation and forward ------------------------------------------------------------------


def own_addresses(ctx: CliContext, user: str) -> list[str]:
    """The user's other addresses, for vacation's :addresses: its aliases,
    and those and the address itself at the alias domains of their domains
    (RFC 5230 §4.5: the reply goes when one of them is a recipient)."""
    aliases = ctx.directory.user_show(user)["aliases"]
    alias_domains: dict[str, list[str]] = {}
    for domain, alias_of in ctx.directory.list_domains():
        if alias_of:
            alias_domains.setdefault(alias_of, []).append(domain)
    out = set(aliases)
    for address in [user, *aliases]:
        local, _, domain = address.rpartition("@")
        out.update(f"{local}@{alias}" for alias in alias_domains.get(domain, ()))
    out.discard(user)
    return sorted(out)


def _store_managed(ctx: CliContext, user: str, name: str, text: str) -> None:
    _store(ctx, _scripts(ctx), user, name, text.encode("utf-8"))


def vacation_set(ctx: CliContext, args: argparse.Namespace) -> None:
    user = _user(ctx, args.user)
    if ctx.stdin.isatty():
        raise CliError("give the reply's text on standard input (e.g. `< away.txt`)")
    try:
        body = check_body(_read_bounded(ctx.stdin, MAX_BODY, "the body"))
        text = vacation_script(days=args.days, subject=args.subject, body=body,
                               own_addresses=own_addresses(ctx, user))
    except ManagedScriptError as e:
        raise CliError(str(e)) from None
    _store_managed(ctx, user, VACATION, text)
    ctx.done(f"vacation set for {user}: each sender answered at most once in {args.days} day(s)")


def forward_set(ctx: CliContext, args: argparse.Namespace) -> None:
    user = _user(ctx, args.user)
    try:
        target = check_address(args.target)
    except ManagedScriptError as e:
        raise CliError(str(e)) from None
    if ctx.directory.resolve(target) == user:
        raise CliError(f"{target} is {user}'s own address: forwarding to it would loop")
    _store_managed(ctx, user, FORWARD, forward_script(target, keep=args.keep))
    ctx.done(f"forward set for {user}: to {target}" + (", a copy kept" if args.keep else ", none kept"))


def _off(ctx: CliContext, args: argparse.Namespace, name: str, what: str) -> None:
    user = _user(ctx, args.user)
    if not _scripts(ctx).remove_any(user, name):
        raise CliError(f"{user} has no {what} set")
    ctx.done(f"{what} off for {user}")


def filter_state(ctx: CliContext, user: str) -> list[tuple[str, str]]:
    """KEY, VALUE lines for `xmailctl user show` (the lead wires them in
    xmail/cli/user.py): the active script, vacation and forward."""
    scripts = _scripts(ctx)
    names = {name for name, _ in scripts.list(user)}
    forward = "off"
    if FORWARD in names:
        # The target as forward_script wrote it (the one quoted string).
        text = scripts.get(user, FORWARD) or ""
        target = text.rpartition("redirect ")[2].partition('"')[2].partition('"')[0]
        forward = f"{target} (a copy kept)" if ":copy" in text else target
    return [("sieve_active", scripts.active(user) or "-"),
            ("vacation", "on" if VACATION in names else "off"),
            ("forward", forward)]


def vacation_off(ctx: CliContext, args: argparse.Namespace) -> None:
    _off(ctx, args, VACATION, "vacation")


def forward_off(ctx: CliContext, args: argparse.Namespace) -> None:
    _off(ctx, args, FORWARD, "forward")
