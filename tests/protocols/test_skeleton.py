# -*- test-case-name: tests.protocols.test_skeleton -*-
"""The shared command table and dispatch gate (xmail/protocols/skeleton.py)."""

from __future__ import annotations

from typing import Any

import pytest
from twisted.internet import defer

from xmail.protocols.skeleton import Command, CommandTable, Denied, Refusal, UserError, gate, start

A, B = "a", "b"


def _table() -> CommandTable:
    table: CommandTable = CommandTable("test", line_limit=20)

    @table.command("open", frozenset({A}))
    def do_open() -> None: ...

    @table.command("MAIL", frozenset({B}), line_limit=40, needs_hello=True, needs_tls=True,
                   needs_auth=True)
    def do_mail() -> None: ...

    @table.command("TOP", min_args=1, max_args=2, flags={"x"})
    def do_top() -> None: ...

    return table


def _refusal(result: Command | Denied) -> Refusal | None:
    return result.refusal if isinstance(result, Denied) else None


def test_registration_upper_cases_and_refuses_duplicates() -> None:
    table = _table()
    assert sorted(table) == ["MAIL", "OPEN", "TOP"]
    assert table["TOP"].flags == frozenset({"x"})
    with pytest.raises(ValueError, match="OPEN registered twice"):
        table.command("Open")(lambda: None)


def test_gate_passes_a_valid_command() -> None:
    table = _table()
    result = gate(table, "MAIL", state=B, line_length=40, hello=True, tls=True, authenticated=True)
    assert isinstance(result, Command) and result.name == "MAIL"
    assert isinstance(gate(table, "TOP", nargs=2), Command)
    assert isinstance(gate(table, "OPEN", state=A), Command)


@pytest.mark.parametrize("name, kwargs, refusal", [
    # the line limit comes first, the table default for unknown names
    ("NOPE", {"line_length": 21}, Refusal.LINE_TOO_LONG),
    ("NOPE", {"line_length": 20}, Refusal.UNKNOWN),
    ("OPEN", {"line_length": 21, "state": A}, Refusal.LINE_TOO_LONG),
    ("MAIL", {"line_length": 41, "state": B}, Refusal.LINE_TOO_LONG),
    # then hello, TLS, auth, state, arity, in that order
    ("MAIL", {"hello": False, "tls": False, "authenticated": False, "state": A}, Refusal.NEEDS_HELLO),
    ("MAIL", {"tls": False, "authenticated": False, "state": A}, Refusal.NEEDS_TLS),
    ("MAIL", {"authenticated": False, "state": A}, Refusal.NEEDS_AUTH),
    ("MAIL", {"state": A}, Refusal.WRONG_STATE),
    ("OPEN", {"state": B}, Refusal.WRONG_STATE),
    ("TOP", {"nargs": 0}, Refusal.WRONG_ARITY),
    ("TOP", {"nargs": 3}, Refusal.WRONG_ARITY),
])
def test_gate_refusals_in_order(name: str, kwargs: dict, refusal: Refusal) -> None:
    result = gate(_table(), name, **kwargs)
    assert _refusal(result) is refusal
    assert isinstance(result, Denied) and result.name == name


def test_command_without_states_is_valid_everywhere() -> None:
    assert isinstance(gate(_table(), "TOP", state="anything", nargs=1), Command)


# -- start: the one coroutine path of a dispatcher -------------------------------------------

def test_start_finishes_a_coroutine_that_never_waits_at_once() -> None:
    done: list[str] = []

    async def handler() -> None:
        done.append("answered")

    assert start(handler()) is None
    assert done == ["answered"]


def test_start_raises_what_the_coroutine_raises_before_waiting() -> None:
    async def handler() -> None:
        raise UserError("IN-USE", "locked")

    with pytest.raises(UserError):
        start(handler())


def test_start_hands_a_waiting_coroutine_to_a_deferred() -> None:
    first: defer.Deferred[int] = defer.Deferred()
    second: defer.Deferred[int] = defer.Deferred()
    seen: list[Any] = []

    async def handler() -> str:
        seen.append(await first)
        seen.append(await defer.succeed(2))  # fired already: no wait
        try:
            await second
        except ValueError as e:
            seen.append(str(e))
        return "done"

    d = start(handler())
    assert isinstance(d, defer.Deferred) and not d.called
    first.callback(1)
    assert seen == [1, 2] and not d.called
    second.errback(ValueError("refused"))
    assert seen == [1, 2, "refused"]
    assert d.called and d.result == "done"


def test_start_fails_the_deferred_with_an_error_raised_after_a_wait() -> None:
    waiting: defer.Deferred[None] = defer.Deferred()

    async def handler() -> None:
        await waiting
        raise UserError("SYS/TEMP", "later")

    d = start(handler())
    assert d is not None
    failures: list[Any] = []
    d.addErrback(failures.append)
    waiting.callback(None)
    assert failures and failures[0].check(UserError)
