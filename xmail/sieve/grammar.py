# -*- test-case-name: tests.sieve.test_compiler -*-
"""What sievelib's parser must know beyond its own tables (issue 18).

sievelib 1.6 parses RFC 5228 and many extensions, but not all the ones
xmail runs: include/return/global (RFC 6609), ereject (RFC 5429),
mailboxexists (RFC 5490), spamtest/virustest (RFC 5235), the variables
`string` test (RFC 5229 §5), :index/:last (RFC 5260 §6), :user/:detail
(RFC 5233) and the i;ascii-numeric comparator (RFC 4790 §9.1).

They are added here, in one place, through sievelib's public
`add_commands` (a class named like sievelib's own replaces it, so a
command whose argument table grows is a subclass with the longer table)
and by extending its shared argument tables.  Importing this module does
it once per process; it changes only what the parser accepts, and every
check of meaning (is the extension required, is the value sane) is the
compiler's (xmail.sieve.compiler), which knows line numbers.

sievelib checks that an extension was required only for the commands and
tags it knows; the compiler checks the rest.
"""

from __future__ import annotations

from typing import Any

from sievelib import commands as sc

# An extension whose commands sievelib files under another name.
ALIASES = {"spamtestplus": ("spamtest",)}

# RFC 4790 §9.1 i;ascii-numeric next to sievelib's two comparators.  The
# table holds quoted strings: sievelib compares the token as written.
sc.comparator["extra_arg"]["values"] = ['"i;octet"', '"i;ascii-casemap"', '"i;ascii-numeric"']

# RFC 5233 subaddress: :user and :detail address parts.
sc.address_part["extension_values"] = {":user": "subaddress", ":detail": "subaddress"}

# RFC 5260 §6 (index): `:index <n>` and `:last` on header, address and date.
_index: Any = {"name": "index", "type": ["tag"], "values": [":index"],
               "extra_arg": {"type": "number"}, "required": False, "extension": "index"}
_last: Any = {"name": "last", "type": ["tag"], "values": [":last"], "required": False,
              "extension": "index"}
# RFC 5173 body: `:content` takes a string list; sievelib asks for a list only.
_transform: Any = {"name": "body-transform", "values": [":raw", ":content", ":text"],
                   "extra_arg": {"type": ["string", "stringlist"], "valid_for": [":content"]},
                   "type": ["tag"], "required": False}
# RFC 5260 §4: :originalzone takes no argument.
_zone: Any = {"name": "zone", "type": ["tag"], "values": [":zone", ":originalzone"],
              "extra_arg": {"type": "string", "valid_for": [":zone"]}, "required": False}


class HeaderCommand(sc.HeaderCommand):
    args_definition = [_index, _last, *sc.HeaderCommand.args_definition]


class AddressCommand(sc.AddressCommand):
    args_definition = [_index, _last, *sc.AddressCommand.args_definition]


class DateCommand(sc.DateCommand):
    args_definition = [_index, _last, _zone, *sc.DateCommand.args_definition[1:]]


class BodyCommand(sc.BodyCommand):
    args_definition = [sc.comparator, sc.match_type, _transform,
                       {"name": "key-list", "type": ["string", "stringlist"], "required": True}]


class IncludeCommand(sc.ActionCommand):
    """RFC 6609 §3.2: include [:personal / :global] [:once] [:optional] <name>."""

    extension = "include"
    args_definition = [
        {"name": "location", "type": ["tag"], "values": [":personal", ":global"], "required": False},
        {"name": "once", "type": ["tag"], "values": [":once"], "required": False},
        {"name": "optional", "type": ["tag"], "values": [":optional"], "required": False},
        {"name": "script", "type": ["string"], "required": True},
    ]


class ReturnCommand(sc.ActionCommand):
    """RFC 6609 §3.3."""

    extension = "include"
    args_definition: list[Any] = []


class GlobalCommand(sc.ActionCommand):
    """RFC 6609 §3.4 (needs "variables" too; the compiler checks)."""

    extension = "include"
    args_definition = [{"name": "names", "type": ["string", "stringlist"], "required": True}]


class ErejectCommand(sc.ActionCommand):
    """RFC 5429 §2.1."""

    extension = "ereject"
    args_definition = [{"name": "text", "type": ["string"], "required": True}]


class MailboxexistsCommand(sc.TestCommand):
    """RFC 5490 §3.1."""

    extension = "mailbox"
    args_definition = [{"name": "mailboxes", "type": ["string", "stringlist"], "required": True}]


class SpamtestCommand(sc.TestCommand):
    """RFC 5235 §3.2 (:percent is spamtestplus, §3.4; the compiler checks)."""

    extension = "spamtest"
    args_definition = [
        {"name": "percent", "type": ["tag"], "values": [":percent"], "required": False},
        sc.comparator, sc.match_type,
        {"name": "value", "type": ["string"], "required": True},
    ]


class VirustestCommand(sc.TestCommand):
    """RFC 5235 §3.3."""

    extension = "virustest"
    args_definition = [sc.comparator, sc.match_type,
                       {"name": "value", "type": ["string"], "required": True}]


class StringCommand(sc.TestCommand):
    """RFC 5229 §5: string [MATCH-TYPE] [COMPARATOR] <source> <key-list>."""

    extension = "variables"
    args_definition = [
        sc.comparator, sc.match_type,
        {"name": "source", "type": ["string", "stringlist"], "required": True},
        {"name": "key-list", "type": ["string", "stringlist"], "required": True},
    ]


class RequireCommand(sc.RequireCommand):
    """`require "spamtestplus"` also loads what spamtest's commands need."""

    def complete_cb(self) -> None:
        super().complete_cb()
        loaded = sc.parser_state.loaded_extensions
        for name, implied in ALIASES.items():
            if name in loaded:
                loaded.extend(x for x in implied if x not in loaded)


sc.add_commands([RequireCommand, HeaderCommand, AddressCommand, DateCommand, BodyCommand, IncludeCommand,
                 ReturnCommand, GlobalCommand, ErejectCommand, MailboxexistsCommand,
                 SpamtestCommand, VirustestCommand, StringCommand])

