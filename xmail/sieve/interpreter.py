# -*- test-case-name: tests.sieve.test_interpreter -*-
"""Sieve evaluation, sans IO: (compiled scripts, message) -> Outcome.

`evaluate(scripts, message, include=...)` runs one recipient's chain --
the domain's before scripts, the user's active script, the user's managed
scripts, the domain's after scripts -- with Pigeonhole's rules for a
script sequence (its "sieve_before"/"sieve_after" documentation):

- each script runs with its own variables; `stop` ends that script only;
- the next script runs only if the one before kept the message (explicit
  `keep`, or an implicit keep nothing cancelled); so "discard; stop;"
  in a before script ends the whole sequence;
- `keep` in any but the last script that runs stores nothing: only the
  last one's (implicit) keep stores into the default folder;
- actions accumulate over the sequence; a second fileinto into the same
  folder (keep counting as fileinto "INBOX"), a second redirect to the
  same address, a second discard are ignored (RFC 5228 §2.10.3).

A runtime error -- too many redirects (MAX_REDIRECTS) or actions, a
missing or recursive include, conflicting actions (reject with a
delivery, RFC 5429 §2.1), a second vacation -- keeps the message: the
Outcome then holds `[Keep()]` and the error, each as one line
(RFC 5228 §2.10.6).  Evaluation is bounded: MAX_STEPS commands and tests
per message, values capped (xmail.sieve.match.MAX_VALUE), variables
capped at MAX_VARIABLE_SIZE characters and MAX_VARIABLES names.
"""

from __future__ import annotations

import calendar
import dataclasses
import email.utils
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from xmail.sieve import match as matching
from xmail.sieve.actions import Action, Discard, FileInto, Keep, Outcome, Redirect, Reject, Vacation
from xmail.sieve.compiler import Command, Script, Test, Text, Var, valid_address
from xmail.sieve.interfaces import MAX_INCLUDE_DEPTH, MAX_REDIRECTS
from xmail.sieve.message import BODY_LIMIT, SieveMessage, indexed

MAX_ACTIONS = 32            # actions one message may collect (Pigeonhole's sieve_max_actions)
MAX_STEPS = 100_000         # commands and tests evaluated per message (includes can repeat)
MAX_WORK = 200_000_000      # characters matching may look at per message (match.cost)
MAX_VARIABLES = 255         # variables per script (Pigeonhole's limit)
MAX_VARIABLE_SIZE = 4096    # characters of one variable's value (Pigeonhole's default)
MAX_STRING = matching.MAX_VALUE  # characters of one expanded string
DEFAULT_VACATION_DAYS = 7   # RFC 5230 §4.1
MIN_VACATION_SECONDS = 86400        # Pigeonhole's sieve_vacation_min_period (1d)


class SieveRuntimeError(Exception):
    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.line = line


class _Stop(Exception):
    """`stop`: ends the script (and the scripts it is included from)."""


class _Return(Exception):
    """`return` (RFC 6609 §3.3): ends the included script."""


def _no_include(_name: str, _global: bool) -> Script | None:
    return None


# --- one evaluation's shared state ------------------------------------------------------

class _Result:
    """Actions over the whole sequence."""

    def __init__(self) -> None:
        self.actions: list[Action] = []
        self.owners: list[object] = []  # the _Run that added each action
        self.redirects: set[str] = set()
        self.steps = 0
        self.work = 0
        # RFC 5232 §3's internal variable; Pigeonhole carries it from one
        # script of the sequence to the next.
        self.flags: list[str] = []
        self.vacation_run: object = None

    def add(self, action: Action, line: int, run: object) -> bool:
        """Add unless a duplicate (-> False: Pigeonhole drops it wholesale,
        so it cancels no implicit keep); raise on a conflict or a limit."""
        for i, other in enumerate(self.actions):
            if _same(other, action):
                if self.owners[i] is run and _folder(other) is not None and \
                        other.flags != action.flags:  # type: ignore[union-attr]
                    # Pigeonhole: the same folder again in one script takes
                    # the new flags (an earlier script's store is done).
                    self.actions[i] = dataclasses.replace(other, flags=action.flags)  # type: ignore[arg-type]
                return False
        # RFC 5429 §2.1 / RFC 5230 §4.7: reject is incompatible with
        # delivering the message and with other responses to the sender --
        # within one script: an earlier script's actions stand (Pigeonhole).
        mine = [a for a, owner in zip(self.actions, self.owners, strict=True) if owner is run]
        rejecting = any(isinstance(a, Reject) for a in mine)
        delivers = Keep | FileInto | Redirect | Vacation
        if isinstance(action, Reject):
            if rejecting:
                raise SieveRuntimeError("more than one reject/ereject", line)
            for other in mine:
                if isinstance(other, delivers):
                    raise SieveRuntimeError(
                        f"reject/ereject conflicts with an earlier {type(other).__name__.lower()}", line)
        elif rejecting and isinstance(action, delivers):
            raise SieveRuntimeError(f"{type(action).__name__.lower()} conflicts with reject/ereject", line)
        if isinstance(action, Vacation) and self.vacation_run is not None:
            if self.vacation_run is run:
                raise SieveRuntimeError("more than one vacation action", line)
            return False  # an earlier script of the sequence answered already
        if isinstance(action, Vacation):
            self.vacation_run = run
        if isinstance(action, Redirect):
            self.redirects.add(action.address.lower())
            if len(self.redirects) > MAX_REDIRECTS:
                raise SieveRuntimeError(f"more than {MAX_REDIRECTS} redirects", line)
        if len(self.actions) >= MAX_ACTIONS:
            raise SieveRuntimeError(f"more than {MAX_ACTIONS} actions", line)
        self.actions.append(action)
        self.owners.append(run)
        return True

    def drop_keeps(self, run: object) -> None:
        """A script's keep that only handed over to the next script."""
        kept = [(a, o) for a, o in zip(self.actions, self.owners, strict=True)
                if not (o is run and isinstance(a, Keep))]
        self.actions = [a for a, _o in kept]
        self.owners = [o for _a, o in kept]


def _folder(action: Action) -> str | None:
    if isinstance(action, Keep):
        return "INBOX"
    if isinstance(action, FileInto):
        return "INBOX" if action.mailbox.upper() == "INBOX" else action.mailbox
    return None


def _same(a: Action, b: Action) -> bool:
    """RFC 5228 §2.10.3: the same action twice is done once."""
    fa, fb = _folder(a), _folder(b)
    if fa is not None and fb is not None:
        return fa == fb
    if isinstance(a, Redirect) and isinstance(b, Redirect):
        return a.address.lower() == b.address.lower()
    return isinstance(a, Discard) and isinstance(b, Discard)


class _Run:
    """One top-level script of the sequence with its includes: the
    implicit keep, the imap4flags internal variable, global variables."""

    def __init__(self, result: _Result, message: SieveMessage,
                 include: Callable[[str, bool], Script | None]):
        self.result = result
        self.message = message
        self.include = include
        self.implicit_keep = True
        self.explicit_keep: Keep | None = None
        self.globals: dict[str, str] = {}   # RFC 6609 §3.4
        self.included: set[tuple[str, bool]] = set()
        self.stack: list[tuple[str, bool]] = []


class _Frame:
    """One script file's variables (RFC 5229 §3: local to the script)."""

    def __init__(self, run: _Run, script: Script):
        self.run = run
        self.script = script
        self.variables: dict[str, str] = {}
        self.global_names: set[str] = set()
        self.match: list[str] = []


# --- entry point -----------------------------------------------------------------------

def evaluate(scripts: Sequence[Script], message: SieveMessage, *,
             include: Callable[[str, bool], Script | None] = _no_include) -> Outcome:
    """Run a recipient's script sequence.  Never raises for a script's
    doing: errors keep the message (RFC 5228 §2.10.6)."""
    result = _Result()
    keep: Keep | None = Keep(implicit=True)
    current = ""
    try:
        for position, script in enumerate(scripts):
            current = script.name
            run = _Run(result, message, include)
            try:
                _execute(_Frame(run, script), script.commands)
            except (_Stop, _Return):
                pass  # RFC 6609 §3.3: return at top level ends the script, as stop does
            if run.explicit_keep is None and not run.implicit_keep:
                keep = None  # nothing kept: the sequence ends here
                break
            keep = run.explicit_keep or Keep(tuple(result.flags), implicit=True)
            if position < len(scripts) - 1:
                # Not the last script: its keep only lets the next one run.
                result.drop_keeps(run)
        if keep is not None and keep.implicit and not any(_folder(a) == "INBOX" for a in result.actions):
            result.actions.append(keep)
    except SieveRuntimeError as e:
        where = f"{current}: " if current else ""
        line = f"line {e.line}: " if e.line else ""
        return Outcome([Keep()], [f"{where}{line}{e.message}"])
    return Outcome(result.actions, [])


# --- commands --------------------------------------------------------------------------

def _step(frame: _Frame, line: int) -> None:
    result = frame.run.result
    result.steps += 1
    if result.steps > MAX_STEPS:
        raise SieveRuntimeError(f"more than {MAX_STEPS} steps", line)


def _execute(frame: _Frame, block: tuple[Command, ...]) -> None:
    for command in block:
        _step(frame, command.line)
        if command.name == "if":
            for test, body in command.branches:
                if test is None or _test(frame, test):
                    _execute(frame, body)
                    break
            continue
        handler = _ACTIONS.get(command.name)
        if handler is None:
            raise SieveRuntimeError(f"{command.name} is not supported", command.line)
        handler(frame, command)


def _expand(frame: _Frame, text: Text) -> str:
    """A string with its variable references replaced (RFC 5229 §3)."""
    if isinstance(text, str):
        return text
    out: list[str] = []
    size = 0
    for part in text:
        value = part if isinstance(part, str) else _lookup(frame, part)
        out.append(value)
        size += len(value)
        if size >= MAX_STRING:
            break
    return "".join(out)[:MAX_STRING]


def _expand_list(frame: _Frame, texts: tuple[Text, ...]) -> Sequence[str]:
    """A string list: the compiler makes every string-list argument a tuple of Text."""
    for t in texts:
        if type(t) is not str:
            return [_expand(frame, t) for t in texts]
    return texts  # type: ignore[return-value]  # all plain strings: as compiled


def _lookup(frame: _Frame, var: Var) -> str:
    name = var.name
    if name.isdigit():
        index = int(name)
        return frame.match[index] if index < len(frame.match) else ""
    if name.startswith("global."):
        return frame.run.globals.get(name[7:], "")
    if name in frame.global_names:
        return frame.run.globals.get(name, "")
    return frame.variables.get(name, "")


def _assign(frame: _Frame, name: str, value: str, line: int) -> None:
    value = value[:MAX_VARIABLE_SIZE]
    if name.startswith("global."):
        store, name = frame.run.globals, name[7:]
    elif name in frame.global_names:
        store = frame.run.globals
    else:
        store = frame.variables
    if name not in store and len(store) >= MAX_VARIABLES:
        raise SieveRuntimeError(f"more than {MAX_VARIABLES} variables", line)
    store[name] = value


def _flag_list(values: list[str]) -> list[str]:
    """RFC 5232 §3: a flag list is space separated; duplicates (any case) once."""
    out: list[str] = []
    seen: set[str] = set()
    for value in values:
        for flag in value.split():
            if flag.lower() not in seen:
                seen.add(flag.lower())
                out.append(flag)
    return out


def _flags_of(frame: _Frame, command: Command) -> tuple[str, ...]:
    if "flags" in command.tags:
        return tuple(_flag_list(_expand_list(frame, command.tags["flags"])))
    return tuple(frame.run.result.flags)


def _keep(frame: _Frame, command: Command) -> None:
    flags = _flags_of(frame, command)
    action = Keep(flags)
    frame.run.result.add(action, command.line, frame.run)
    frame.run.explicit_keep = action
    frame.run.implicit_keep = False


def _fileinto(frame: _Frame, command: Command) -> None:
    mailbox = _expand(frame, command.args["mailbox"])
    copy = bool(command.tags.get("copy"))
    action = FileInto(mailbox, _flags_of(frame, command), bool(command.tags.get("create")), copy)
    added = frame.run.result.add(action, command.line, frame.run)
    if added and not copy:  # Pigeonhole: a duplicate leaves the implicit keep as it was
        frame.run.implicit_keep = False


def _redirect(frame: _Frame, command: Command) -> None:
    address = _expand(frame, command.args["address"]).strip()
    found = _one_address(address)
    if found is None:
        raise SieveRuntimeError(f"invalid redirect address {address[:200]!r}", command.line)
    copy = bool(command.tags.get("copy"))
    added = frame.run.result.add(Redirect(found, copy), command.line, frame.run)
    if added and not copy:
        frame.run.implicit_keep = False


def _one_address(text: str) -> str | None:
    """RFC 5228 §4.2: one address, an addr-spec (RFC 5322 §3.4.1), maybe
    in angle brackets; anything else is a runtime error."""
    return valid_address(text)


def _reject(frame: _Frame, command: Command) -> None:
    reason = _expand(frame, command.args["text"])
    frame.run.result.add(Reject(reason, extended=command.name == "ereject"), command.line, frame.run)
    frame.run.implicit_keep = False


def _discard(frame: _Frame, command: Command) -> None:
    frame.run.result.add(Discard(), command.line, frame.run)
    frame.run.implicit_keep = False


def _stop(frame: _Frame, command: Command) -> None:
    raise _Stop()


def _return(frame: _Frame, command: Command) -> None:
    raise _Return()


def _vacation(frame: _Frame, command: Command) -> None:
    tags = command.tags
    reason = _expand(frame, command.args["reason"])
    subject = _expand(frame, tags["subject"]) if "subject" in tags else None
    from_ = _expand(frame, tags["from"]) if "from" in tags else None
    addresses = tuple(_expand_list(frame, tags["addresses"])) if "addresses" in tags else ()
    mime = bool(tags.get("mime"))
    if "seconds" in tags:
        seconds = int(tags["seconds"])   # RFC 6131 §2
    else:
        seconds = int(tags.get("days", DEFAULT_VACATION_DAYS)) * 86400  # RFC 5230 §4.1
    # Pigeonhole's sieve_vacation_min_period (1 day) holds even for :seconds 0.
    seconds = max(seconds, MIN_VACATION_SECONDS)
    if "handle" in tags:
        handle = _expand(frame, tags["handle"])
    else:
        handle = tags["default-handle"]  # the compiler's, from the strings as written
    frame.run.result.add(Vacation(reason, subject, from_, addresses, seconds, handle, mime), command.line,
                         frame.run)


def _set(frame: _Frame, command: Command) -> None:
    name = command.args["name"]
    value = _expand(frame, command.args["value"])
    modifiers = command.tags.get("modifiers", ())
    # RFC 5229 §4.1: higher precedence first.
    if "lower" in modifiers:
        value = value.lower()
    if "upper" in modifiers:
        value = value.upper()
    if "lowerfirst" in modifiers:
        value = value[:1].lower() + value[1:]
    if "upperfirst" in modifiers:
        value = value[:1].upper() + value[1:]
    if "quotewildcard" in modifiers:
        value = value.replace("\\", "\\\\").replace("*", "\\*").replace("?", "\\?")
    if "length" in modifiers:
        value = str(len(value))
    _assign(frame, name.lower(), value, command.line)


def _global(frame: _Frame, command: Command) -> None:
    for name in command.args["names"]:
        frame.global_names.add(name.lower())


def _flag_variable(frame: _Frame, command: Command) -> str | None:
    variable = command.args.get("variable-name")
    return _expand(frame, variable).lower() if variable is not None else None


def _setflag(frame: _Frame, command: Command) -> None:
    flags = _flag_list(_expand_list(frame, command.args["list-of-flags"]))
    _store_flags(frame, command, flags)


def _addflag(frame: _Frame, command: Command) -> None:
    current = _current_flags(frame, command)
    _store_flags(frame, command, _flag_list([*current, *_expand_list(frame, command.args["list-of-flags"])]))


def _removeflag(frame: _Frame, command: Command) -> None:
    remove = {f.lower() for f in _flag_list(_expand_list(frame, command.args["list-of-flags"]))}
    _store_flags(frame, command, [f for f in _current_flags(frame, command) if f.lower() not in remove])


def _current_flags(frame: _Frame, command: Command) -> list[str]:
    variable = _flag_variable(frame, command)
    if variable is None:
        return list(frame.run.result.flags)
    return _flag_list([_lookup(frame, Var(variable))])


def _store_flags(frame: _Frame, command: Command, flags: list[str]) -> None:
    variable = _flag_variable(frame, command)
    if variable is None:
        frame.run.result.flags = flags
    else:
        _assign(frame, variable, " ".join(flags), command.line)


def _include(frame: _Frame, command: Command) -> None:
    run = frame.run
    name = _expand(frame, command.args["script"])
    global_ = bool(command.tags.get("global"))
    key = (name, global_)
    if command.tags.get("once") and key in run.included:
        return
    if key in run.stack:
        raise SieveRuntimeError(f"include of {name!r} is recursive", command.line)
    if len(run.stack) >= MAX_INCLUDE_DEPTH:
        raise SieveRuntimeError(f"includes nested deeper than {MAX_INCLUDE_DEPTH}", command.line)
    script = run.include(name, global_)
    if script is None:
        if command.tags.get("optional"):
            return
        raise SieveRuntimeError(f"included script {name!r} does not exist", command.line)
    run.included.add(key)
    run.stack.append(key)
    try:
        _execute(_Frame(run, script), script.commands)
    except _Return:
        pass
    finally:
        run.stack.pop()


_ACTIONS: dict[str, Callable[[_Frame, Command], None]] = {
    "keep": _keep, "fileinto": _fileinto, "redirect": _redirect, "reject": _reject,
    "ereject": _reject, "discard": _discard, "stop": _stop, "return": _return,
    "vacation": _vacation, "set": _set, "global": _global, "setflag": _setflag,
    "addflag": _addflag, "removeflag": _removeflag, "include": _include,
}


# --- tests -----------------------------------------------------------------------------

def _test(frame: _Frame, test: Test) -> bool:
    _step(frame, test.line)
    name = test.name
    if name == "true":
        return True
    if name == "false":
        return False
    if name == "not":
        return not _test(frame, test.tests[0])
    if name == "anyof":
        return any(_test(frame, t) for t in test.tests)
    if name == "allof":
        return all(_test(frame, t) for t in test.tests)
    handler = _TESTS.get(name)
    if handler is None:
        raise SieveRuntimeError(f"test {name} is not supported", test.line)
    return handler(frame, test)


def _compare(frame: _Frame, test: Test, values: list[str], keys: Sequence[str] | None = None,
             limit: int = matching.MAX_VALUE, capture: bool = True) -> bool:
    tags = test.tags
    if keys is None:
        keys = _expand_list(frame, test.args["key-list"])
    result = frame.run.result
    result.work += matching.cost(values, keys, tags.get("match", "is"), limit)
    if result.work > MAX_WORK:
        raise SieveRuntimeError("too much matching work for one message", test.line)
    ok, captured = matching.test(values, keys, tags.get("match", "is"),
                                 tags.get("comparator", "i;ascii-casemap"), tags.get("relation"), limit)
    if ok and captured is not None and capture:
        frame.match = captured  # RFC 5229 §3.2: set by a successful :matches
    return ok


def _index(test: Test) -> tuple[int | None, bool]:
    index = test.tags.get("index")
    return (int(index) if index is not None else None), bool(test.tags.get("last"))


def _header(frame: _Frame, test: Test) -> bool:
    index, last = _index(test)
    values: list[str] = []
    for name in _expand_list(frame, test.args["header-names"]):
        values.extend(indexed(frame.run.message.values(name), index, last))
    return _compare(frame, test, values)


def _address_part(local: str, domain: str | None, part: str) -> str | None:
    """`domain` None: not an address (the field's text, as Pigeonhole
    gives it), which only :all sees."""
    if domain is None:
        return local if part == "all" else None
    if part == "localpart":
        return local
    if part == "domain":
        return domain
    if part in ("user", "detail"):
        # RFC 5233 §4: "+" separates user and detail; no "+", no detail.
        user, plus, detail = local.partition("+")
        if part == "user":
            return user
        return detail if plus else None
    return f"{local}@{domain}"


def _address(frame: _Frame, test: Test) -> bool:
    index, last = _index(test)
    part = test.tags.get("part", "all")
    values: list[str] = []
    for name in _expand_list(frame, test.args["header-list"]):
        for local, domain in frame.run.message.addresses(name, index, last):
            value = _address_part(local, domain, part)
            if value is not None:
                values.append(value)
    return _compare(frame, test, values)


def _envelope(frame: _Frame, test: Test) -> bool:
    message = frame.run.message
    part = test.tags.get("part", "all")
    values: list[str] = []
    for name in _expand_list(frame, test.args["header-list"]):
        name = name.lower()
        address = {"from": message.mail_from, "to": message.rcpt_to, "auth": message.auth}.get(name)
        if address is None:
            continue
        if address == "":
            # RFC 5228 §5.4: the null reverse-path is the empty string.
            if part in ("all", "localpart", "domain", "user"):
                values.append("")
            continue
        local, at, domain = address.rpartition("@")
        if at:
            value = _address_part(local, domain, part)
        else:
            value = address if part in ("all", "localpart") else None
        if value is not None:
            values.append(value)
    return _compare(frame, test, values)


def _exists(frame: _Frame, test: Test) -> bool:
    message = frame.run.message
    return all(message.exists(n) for n in _expand_list(frame, test.args["header-names"]))


def _size(frame: _Frame, test: Test) -> bool:
    limit = int(test.args["limit"])
    size = frame.run.message.size
    return size > limit if test.tags.get("over") else size < limit


def _body(frame: _Frame, test: Test) -> bool:
    transform = test.tags.get("transform", "text")
    types = tuple(_expand_list(frame, test.tags.get("content", ()))) if transform == "content" else ()
    values = frame.run.message.body_texts(transform, types)
    # Pigeonhole sets no match variables from a body test.
    return _compare(frame, test, values, limit=BODY_LIMIT, capture=False)


def _string(frame: _Frame, test: Test) -> bool:
    values = _expand_list(frame, test.args["source"])
    if test.tags.get("match") == "count":
        values = [v for v in values if v != ""]  # RFC 5229 §5: empty strings not counted
    return _compare(frame, test, values)


def _environment(frame: _Frame, test: Test) -> bool:
    name = _expand(frame, test.args["name"]).lower()
    value = frame.run.message.environment.get(name)
    if value is None:
        return False  # RFC 5183 §4: an unknown item never matches
    return _compare(frame, test, [value])


def _mailboxexists(frame: _Frame, test: Test) -> bool:
    exists = frame.run.message.mailbox_exists
    return all(exists(n) for n in _expand_list(frame, test.args["mailboxes"]))


def _spamtest(frame: _Frame, test: Test) -> bool:
    value = frame.run.message.spamtest
    score = value if value is not None else 0
    if test.tags.get("percent"):
        # RFC 5235 §3.4: 0 (not spam) .. 100 (surely spam); untested is 0.
        score = 0 if score <= 1 else round((score - 1) * 100 / 9)
    return _compare(frame, test, [str(score)], [_expand(frame, test.args["value"])])


def _virustest(frame: _Frame, test: Test) -> bool:
    value = frame.run.message.virustest
    return _compare(frame, test, [str(value if value is not None else 0)],
                    [_expand(frame, test.args["value"])])


def _hasflag(frame: _Frame, test: Test) -> bool:
    names = test.args.get("variable-list")
    if names is None:
        values = list(frame.run.result.flags)
    else:
        values = _flag_list([_lookup(frame, Var(n.lower())) for n in _expand_list(frame, names)])
    keys = _flag_list(_expand_list(frame, test.args["list-of-flags"]))
    return _compare(frame, test, values, keys)


def _date(frame: _Frame, test: Test) -> bool:
    index, last = _index(test)
    name = _expand(frame, test.args["header-name"])
    raws = indexed(frame.run.message.values(name), index, last)
    part = _expand(frame, test.args["date-part"]).lower()
    values = []
    for raw in raws:
        if name.lower() == "received":
            raw = raw.rpartition(";")[2]  # RFC 5260 §4.1: the date after the last ";"
        when = _parse_date(raw)
        if when is None:
            continue
        if not test.tags.get("originalzone"):
            when = when.astimezone(_zone(frame, test))
        value = _date_part(when, part)
        if value is not None:
            values.append(value)
    return _compare(frame, test, values)


def _currentdate(frame: _Frame, test: Test) -> bool:
    part = _expand(frame, test.args["date-part"]).lower()
    when = frame.run.message.now.astimezone(_zone(frame, test))
    value = _date_part(when, part)
    return _compare(frame, test, [value] if value is not None else [])


def _zone(frame: _Frame, test: Test) -> Any:
    zone = test.tags.get("zone")
    if isinstance(zone, str | tuple):
        text = _expand(frame, zone)
        if len(text) == 5 and text[0] in "+-" and text[1:].isdigit():
            minutes = int(text[1:3]) * 60 + int(text[3:5])
            return timezone(timedelta(minutes=-minutes if text[0] == "-" else minutes))
    # RFC 5260 §4.1: no :zone, the local zone: the one `now` carries.
    return frame.run.message.now.tzinfo or UTC


def _parse_date(raw: str) -> datetime | None:
    """RFC 5322 §3.3 date-time -> aware datetime in its own zone."""
    if len(raw) > 256:
        return None
    parsed = email.utils.parsedate_tz(raw)
    if parsed is None:
        return None
    year, month, day, hour, minute, second = parsed[:6]
    offset = parsed[9] or 0
    try:
        return datetime(year, month, day, hour, minute, min(second, 59),
                        tzinfo=timezone(timedelta(seconds=offset)))
    except (ValueError, OverflowError):
        return None


def _date_part(when: datetime, part: str) -> str | None:
    """RFC 5260 §4.2."""
    offset = when.utcoffset() or timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    zone = f"{sign}{abs(minutes) // 60:02d}{abs(minutes) % 60:02d}"
    if part == "year":
        return f"{when.year:04d}"
    if part == "month":
        return f"{when.month:02d}"
    if part == "day":
        return f"{when.day:02d}"
    if part == "date":
        return f"{when.year:04d}-{when.month:02d}-{when.day:02d}"
    if part == "julian":
        # Modified Julian Day: days since 1858-11-17.
        return str((when.date() - datetime(1858, 11, 17).date()).days)
    if part == "hour":
        return f"{when.hour:02d}"
    if part == "minute":
        return f"{when.minute:02d}"
    if part == "second":
        return f"{when.second:02d}"
    if part == "time":
        return f"{when.hour:02d}:{when.minute:02d}:{when.second:02d}"
    if part == "iso8601":
        # RFC 3339 §5.6 as Pigeonhole writes it: "Z" for a zero offset.
        suffix = "Z" if minutes == 0 else f"{zone[:3]}:{zone[3:]}"
        return (f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when.hour:02d}:{when.minute:02d}"
                f":{when.second:02d}{suffix}")
    if part == "std11":
        return (f"{calendar.day_abbr[when.weekday()]}, {when.day:02d} {calendar.month_abbr[when.month]}"
                f" {when.year:04d} {when.hour:02d}:{when.minute:02d}:{when.second:02d} {zone}")
    if part == "zone":
        return zone
    if part == "weekday":
        return str((when.weekday() + 1) % 7)  # 0 is Sunday
    return None


_TESTS: dict[str, Callable[[_Frame, Test], bool]] = {
    "header": _header, "address": _address, "envelope": _envelope, "exists": _exists,
    "size": _size, "body": _body, "string": _string, "environment": _environment,
    "mailboxexists": _mailboxexists, "spamtest": _spamtest, "virustest": _virustest,
    "hasflag": _hasflag, "date": _date, "currentdate": _currentdate,
}
