# -*- test-case-name: tests.protocols.test_smtp_session -*-
"""Per-user daily sending limit (limits.daily_send_limit).

In memory per process for now; issue #9 (several workers) replaces it with
a shared counter behind the same two methods.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class DailySendCounter:
    """Messages submitted per user per UTC day."""

    def __init__(self, limit: int, clock: Callable[[], float] = time.time):
        self.limit = limit  # 0 = unlimited
        self._clock = clock
        self._day = -1
        self._counts: dict[str, int] = {}

    def _today(self) -> dict[str, int]:
        day = int(self._clock() // 86400)
        if day != self._day:
            self._day = day
            self._counts = {}
        return self._counts

    def reached(self, user: str) -> bool:
        return bool(self.limit) and self._today().get(user, 0) >= self.limit

    def record(self, user: str, messages: int = 1) -> None:
        counts = self._today()
        counts[user] = counts.get(user, 0) + messages
