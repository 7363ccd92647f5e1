# -*- test-case-name: tests.filter.test_burst -*-
"""The burst rule for submissions (issue 17): more than `[filter]
burst_per_minute` messages from one user within a minute is what a
hijacked account sending spam looks like.  Further messages are refused
with a temporary `450 4.7.1` (a legitimate client retries later, a
spamming one is slowed to the limit) and each refusal writes an admin
log line for the operator.  The count is per process (each worker keeps
its own window), which bounds a user to workers x limit at worst.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from typing import Any

from xmail.filter.interfaces import SUBMISSION, Review, Transaction, Verdict
from xmail.filter.pipeline import IGNORE, Stage

WINDOW = 60.0
MAX_USERS = 100_000  # windows kept; beyond, the oldest idle ones go


class BurstStage(Stage):
    name = "burst"
    on_failure = IGNORE

    def __init__(self, per_minute: int, clock: Callable[[], float], audit: Any = None):
        self.per_minute = per_minute
        self.clock = clock
        self.audit = audit
        self._sent: dict[str, deque[float]] = {}

    def applies(self, transaction: Transaction) -> bool:
        return transaction.mode == SUBMISSION and transaction.user is not None and self.per_minute > 0

    def review(self, review: Review) -> None:
        user = review.transaction.user
        assert user is not None
        now = self.clock()
        sent = self._sent.get(user)
        if sent is None:
            if len(self._sent) >= MAX_USERS:
                self._forget_idle(now)
            sent = self._sent[user] = deque()
        while sent and sent[0] <= now - WINDOW:
            sent.popleft()
        if len(sent) >= self.per_minute:
            review.decide(Verdict.tempfail(
                f"Too many messages: at most {self.per_minute} a minute, try again later",
                code=450, status="4.7.1", stage=self.name))
            if self.audit is not None:
                self.audit.admin("xmail", "burst rule", "refused", user=user, id=review.transaction.id,
                                 limit=self.per_minute, client_ip=review.transaction.client_ip)
            return
        sent.append(now)

    def _forget_idle(self, now: float) -> None:
        for user in [u for u, sent in self._sent.items() if not sent or sent[-1] <= now - WINDOW]:
            del self._sent[user]
