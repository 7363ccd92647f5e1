"""The submission burst rule."""

from __future__ import annotations

from typing import Any

from twisted.internet import task

from tests.filter.test_pipeline import run, transaction
from xmail.filter.burst import BurstStage
from xmail.filter.interfaces import MX, SUBMISSION, Action
from xmail.filter.pipeline import DeliveryPipeline


class Audit:
    def __init__(self) -> None:
        self.lines: list[tuple[Any, ...]] = []

    def admin(self, operator: str, command: str, result: str, **fields: Any) -> None:
        self.lines.append((operator, command, result, fields["user"]))


def test_more_than_the_limit_in_a_minute_is_refused_and_logged() -> None:
    clock, audit = task.Clock(), Audit()
    pipeline = DeliveryPipeline([BurstStage(3, clock.seconds, audit)], clock, "h")

    def send(user: str = "bob@example.com") -> Any:
        (review,) = run(pipeline, transaction(SUBMISSION, user=user))
        return review.verdict

    assert [send().action for _ in range(3)] == [Action.ACCEPT] * 3
    refused = send()
    assert (refused.action, refused.code, refused.status) == (Action.TEMPFAIL, 450, "4.7.1")
    assert audit.lines == [("xmail", "burst rule", "refused", "bob@example.com")]
    assert send("carol@example.com").action is Action.ACCEPT  # per user
    clock.advance(60)
    assert send().action is Action.ACCEPT  # the window moved on


def test_the_rule_is_off_at_zero_and_for_mx() -> None:
    assert not BurstStage(0, task.Clock().seconds).applies(transaction(SUBMISSION, user="b@x.y"))
    assert not BurstStage(5, task.Clock().seconds).applies(transaction(MX))
