# -*- test-case-name: tests.protocols.test_skeleton -*-
"""The protocol skeleton shared by SMTP, POP3 and IMAP: one command table,
one dispatch gate, three error classes.

Protocol-neutral on purpose (no protocol imports another; each imports this
module).  The shape follows mox (`imapserver/server.go`: per-state command
sets, one name -> handler map, a single gate before any handler) and
aiosmtpd (line length, TLS and authentication checked before dispatch):

- `Command`: a registered command and the rules the gate applies to it.
- `CommandTable`: a protocol's commands, registered once with the
  `table.command(...)` decorator.
- `gate(table, name, ...)`: the one check before a handler runs; it
  returns the `Command` or a `Denied` saying why.  Each protocol turns a
  `Denied` into its wire reply in one function.
- `UserError`, `BadSyntax`, `ServerFault`: how a handler fails.  Each
  protocol turns them into wire bytes in one place:

  ============  ========================  ===================  ======================
  error         IMAP (RFC 3501 §7.1)      POP3 (RFC 2449 §8)   SMTP (RFC 5321 §4.2)
  ============  ========================  ===================  ======================
  UserError     tag NO [CODE] text        -ERR [CODE] text     its catalog reply
  BadSyntax     tag BAD text              -ERR text            501 5.5.4
  ServerFault   tag NO [SERVERBUG] + log  -ERR [SYS/TEMP] +log 451 4.3.0 + log
  ============  ========================  ===================  ======================

  Any other exception escaping a handler is a server fault too.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Coroutine, Generator, Hashable, Iterator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from twisted.internet import defer

H = TypeVar("H", bound=Callable[..., Any])


# -- errors ---------------------------------------------------------------------
class UserError(Exception):
    """A refusal the client caused and can understand: the protocol's code
    (IMAP/POP3 response code string, SMTP catalog reply) and a text."""

    def __init__(self, code: Any, text: str = ""):
        super().__init__(text)
        self.code = code
        self.text = text


class BadSyntax(Exception):
    """The command is malformed (IMAP BAD, SMTP 501, POP3 -ERR)."""

    def __init__(self, text: str = "syntax error"):
        super().__init__(text)
        self.text = text


class ServerFault(Exception):
    """Something failed that is not the client's doing: logged with its
    traceback, answered with a generic temporary reply that reveals nothing."""

    def __init__(self, text: str = "internal server error"):
        super().__init__(text)
        self.text = text


# -- the command table ----------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Command:
    """One command and the rules the gate checks before its handler runs.

    `states` are the protocol's session states the command is valid in (an
    empty set: any state).  `line_limit` bounds the command line in octets,
    CRLF included (None: the table's default).  `min_args`/`max_args` give
    the arity for protocols whose arguments are split by the parser (POP3);
    `max_args` None: unchecked.  `flags` carry protocol-specific markers the
    dispatcher reads (IMAP "forbids_expunge", RFC 3501 §7.4.1).

    `needs_tls` marks the commands that carry a password (POP3 USER, PASS,
    AUTH; SMTP AUTH; IMAP LOGIN, AUTHENTICATE): refused on a clear
    connection unless the client is exempt (a loopback client with
    [server] loopback_plaintext_auth on; for SMTP also a listener that
    offers no AUTH at all).  The exemption is per connection, so the
    dispatcher passes the gate `tls` = "TLS active or exempt", not the bare
    TLS state, and turns Refusal.NEEDS_TLS into its protocol's reply:
    POP3 `-ERR [AUTH]` (RFC 3206 §5), SMTP 538 5.7.11 (RFC 4954 §6), IMAP
    `NO [PRIVACYREQUIRED]` (RFC 5530 §3).
    """

    name: str
    handler: Callable[..., Any]
    states: frozenset[Hashable] = frozenset()
    line_limit: int | None = None
    needs_hello: bool = False
    needs_tls: bool = False
    needs_auth: bool = False
    min_args: int = 0
    max_args: int | None = None
    flags: frozenset[str] = frozenset()


class CommandTable(Generic[H]):
    """A protocol's commands by (upper-case) name; each registered once."""

    def __init__(self, protocol: str, *, line_limit: int | None = None):
        self.protocol = protocol
        self.line_limit = line_limit  # default for commands without their own
        self._commands: dict[str, Command] = {}

    def add(self, command: Command) -> Command:
        name = command.name.upper()
        if name in self._commands:
            raise ValueError(f"{self.protocol} command {name} registered twice")
        self._commands[name] = command
        return command

    def command(self, name: str, states: frozenset[Hashable] | None = None, *,
                line_limit: int | None = None, needs_hello: bool = False, needs_tls: bool = False,
                needs_auth: bool = False, min_args: int = 0, max_args: int | None = None,
                flags: frozenset[str] | set[str] = frozenset()) -> Callable[[H], H]:
        """Decorator: register the handler under `name`."""

        def register(handler: H) -> H:
            self.add(Command(name.upper(), handler, frozenset(states or ()), line_limit, needs_hello,
                             needs_tls, needs_auth, min_args, max_args, frozenset(flags)))
            return handler

        return register

    def get(self, name: str) -> Command | None:
        return self._commands.get(name)

    def __getitem__(self, name: str) -> Command:
        return self._commands[name]

    def __contains__(self, name: object) -> bool:
        return name in self._commands

    def __iter__(self) -> Iterator[str]:
        return iter(self._commands)

    def __len__(self) -> int:
        return len(self._commands)

    def items(self) -> Iterator[tuple[str, Command]]:
        return iter(self._commands.items())

    def limit_for(self, name: str) -> int | None:
        command = self._commands.get(name)
        if command is not None and command.line_limit is not None:
            return command.line_limit
        return self.line_limit


# -- the gate -----------------------------------------------------------------------
class Refusal(enum.Enum):
    """Why the gate refused a command, in the order it checks."""

    LINE_TOO_LONG = "line too long"
    UNKNOWN = "unknown command"
    NEEDS_HELLO = "hello first"
    NEEDS_TLS = "TLS first"
    NEEDS_AUTH = "authentication first"
    WRONG_STATE = "not valid in this state"
    WRONG_ARITY = "wrong number of arguments"


@dataclass(frozen=True, slots=True)
class Denied:
    refusal: Refusal
    name: str
    command: Command | None  # None when the name is unknown


def gate(table: CommandTable[Any], name: str, *, state: Hashable = None, line_length: int = 0,
         hello: bool = True, tls: bool = True, authenticated: bool = True,
         nargs: int | None = None) -> Command | Denied:
    """The one check before dispatch: the command named `name` or why not.

    Order: line length (the table's default for unknown names, so an
    over-long unknown line is "too long", as aiosmtpd and Postfix answer),
    unknown name, hello, TLS, authentication, state, arity.  `line_length`
    counts the line with its CRLF; 0 skips the check (the tokenizer bounded
    it already).  `tls` is "TLS active or this connection is exempt" (see
    `Command.needs_tls`).  `nargs` None skips the arity check.
    """
    limit = table.limit_for(name)
    if line_length and limit is not None and line_length > limit:
        return Denied(Refusal.LINE_TOO_LONG, name, table.get(name))
    command = table.get(name)
    if command is None:
        return Denied(Refusal.UNKNOWN, name, None)
    if command.needs_hello and not hello:
        return Denied(Refusal.NEEDS_HELLO, name, command)
    if command.needs_tls and not tls:
        return Denied(Refusal.NEEDS_TLS, name, command)
    if command.needs_auth and not authenticated:
        return Denied(Refusal.NEEDS_AUTH, name, command)
    if command.states and state not in command.states:
        return Denied(Refusal.WRONG_STATE, name, command)
    if nargs is not None and not (
            command.min_args <= nargs and (command.max_args is None or nargs <= command.max_args)):
        return Denied(Refusal.WRONG_ARITY, name, command)
    return command


def start(coroutine: Coroutine[Any, Any, Any]) -> defer.Deferred[Any] | None:
    """Run a handler's coroutine up to its first wait.

    None: it finished here and then, its reply written, at the cost of one
    `send` (no Deferred, no extra reactor turn: most commands of a session
    never wait, and POP3 RETR/UIDL/NOOP pipelined are counted in
    microseconds).  Otherwise a Deferred that fires when it finishes, driven
    by Twisted like `Deferred.fromCoroutine`.  An exception the coroutine
    raises before its first wait is raised here, so the dispatcher answers
    it in the same place as a gate refusal; one raised later fails the
    Deferred.
    """
    try:
        waiting = coroutine.send(None)
    except StopIteration:
        return None
    return defer.Deferred.fromCoroutine(_resume(coroutine, waiting))


def _resume(coroutine: Coroutine[Any, Any, Any], waiting: Any) -> Generator[Any, Any, Any]:
    """PEP 380's `yield from` for a coroutine already started: it yielded
    `waiting` (the Deferred it awaits); hand that to Twisted's driver, pass
    back what the driver sends or throws, until the coroutine returns."""
    while True:
        try:
            sent = yield waiting
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as error:
            try:
                waiting = coroutine.throw(error)
            except StopIteration as stop:
                return stop.value
        else:
            try:
                waiting = coroutine.send(sent)
            except StopIteration as stop:
                return stop.value


async def settle(result: Any) -> Any:
    """Await `result` if it is a Deferred, else return it: lets a coroutine
    handler call helpers that answer now or later (SASL steps, checks)."""
    if isinstance(result, defer.Deferred):
        return await result
    return result
