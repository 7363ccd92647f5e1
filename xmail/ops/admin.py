# -*- test-case-name: tests.ops.test_cli, tests.ops.test_audit -*-
"""The admin log: every change `xmailctl` makes, who ran it and when.

`xmail.cli.main` runs each command through `run_recorded`.  Commands that
only read (listings, `show`, `log`, `stats`) are not recorded; anything else,
including a command this module does not know, is recorded with its result
("ok", "error: MESSAGE", "interrupted").  The operator is the login name
behind sudo (SUDO_USER) when there is one, else the user running the
command.  Secrets never reach the line: the value of --password-hash is
replaced by "***" (passwords themselves come from stdin or a terminal).
"""

from __future__ import annotations

import getpass
import os
import sys
from collections.abc import Sequence
from typing import Any

# (group, command); command None: every command of the group.
READ_ONLY: frozenset[tuple[str, str | None]] = frozenset({
    ("domain", "list"), ("user", "show"), ("user", "list"), ("alias", "list"),
    ("recycle", "list"), ("queue", "list"), ("dns", None), ("log", None), ("stats", None),
})
SECRET_OPTIONS = ("--password-hash",)


def is_change(args: Any) -> bool:
    if getattr(args.func, "read_only", False):
        return False
    group, command = getattr(args, "group", None), getattr(args, "command", None)
    return (group, None) not in READ_ONLY and (group, command) not in READ_ONLY


def redact(argv: Sequence[str]) -> list[str]:
    words: list[str] = []
    hide_next = False
    for word in argv:
        if hide_next:
            words.append("***")
            hide_next = False
            continue
        option, eq, _value = word.partition("=")
        if option in SECRET_OPTIONS:
            if eq:
                words.append(f"{option}=***")
            else:
                words.append(word)
                hide_next = True
            continue
        words.append(word)
    return words


def operator() -> tuple[str, str]:
    """(the person, the account the command ran as)."""
    try:
        account = getpass.getuser()
    except Exception:  # no name for this uid (a container)
        account = f"uid {os.getuid()}"
    return os.environ.get("SUDO_USER") or account, account


def record(settings: Any, argv: Sequence[str], result: str) -> None:
    from xmail.ops.audit import AuditLog

    person, account = operator()
    audit = AuditLog(settings)
    try:
        audit.admin(person, redact(argv), result, account=account, pid=os.getpid())
    finally:
        audit.close()


def run_recorded(ctx: Any, args: Any, argv: Sequence[str] | None) -> Any:
    """args.func(ctx, args), with an admin log line for a change."""
    if not is_change(args):
        return args.func(ctx, args)
    words = list(sys.argv[1:] if argv is None else argv)
    result = "error"
    try:
        status = args.func(ctx, args)
        result = "ok" if not status else f"exit {status}"
        return status
    except KeyboardInterrupt:
        result = "interrupted"
        raise
    except Exception as e:
        result = f"error: {e}"
        raise
    finally:
        try:
            record(ctx.settings, words, result)
        except OSError as e:
            ctx.warn(f"cannot write the admin log: {e}")
