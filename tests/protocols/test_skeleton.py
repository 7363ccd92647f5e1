# -*- test-case-name: tests.protocols.test_skeleton -*-
"""The shared command table and dispatch gate (xmail/protocols/skeleton.py)."""

from __future__ import annotations

import pytest

from xmail.protocols.skeleton import Command, CommandTable, Denied, Refusal, gate

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
