# -*- test-case-name: tests.test_deadline -*-
"""xmail.limits.CommandDeadline on a task.Clock (issue 16 #4)."""

from __future__ import annotations

from twisted.internet import task

from xmail.limits import COMMAND, LOGIN, MIN_TRANSFER_RATE, CommandDeadline


def make(**kw: object) -> tuple[CommandDeadline, task.Clock, list[str]]:
    clock, fired = task.Clock(), []
    options = {"command_timeout": 10, "login_timeout": 30, **kw}
    return CommandDeadline(clock, on_expired=fired.append, **options), clock, fired  # type: ignore[arg-type]


def test_command_clock_runs_only_while_pending() -> None:
    deadline, clock, fired = make()
    deadline.logged_in()
    clock.advance(100)  # idle: nothing owed
    deadline.pending()
    clock.advance(9)
    deadline.pending()  # more bytes of the same command: the clock is not restarted
    clock.advance(1)
    assert fired == [COMMAND]


def test_idle_stops_the_command_clock() -> None:
    deadline, clock, fired = make(login_timeout=0)
    deadline.pending()
    clock.advance(9)
    deadline.idle()
    clock.advance(100)
    assert fired == []


def test_data_received_buys_time_at_the_minimum_rate() -> None:
    deadline, clock, fired = make(login_timeout=0)
    deadline.pending()
    deadline.received(10 * MIN_TRANSFER_RATE)
    clock.advance(19)
    assert fired == []
    clock.advance(1)
    assert fired == [COMMAND]


def test_login_deadline_from_connect_unless_logged_in() -> None:
    deadline, clock, fired = make()
    clock.advance(30)
    assert fired == [LOGIN]
    deadline2, clock2, fired2 = make()
    deadline2.logged_in()
    clock2.advance(100)
    assert fired2 == []


def test_zero_switches_deadlines_off() -> None:
    deadline, clock, fired = make(command_timeout=0, login_timeout=0)
    deadline.pending()
    clock.advance(10_000)
    assert fired == [] and clock.getDelayedCalls() == []
