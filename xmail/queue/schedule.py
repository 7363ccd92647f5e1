# -*- test-case-name: tests.queue.test_schedule -*-
"""When to try again after a temporary failure, and when to give up.

RFC 5321 §4.5.4.1: the retry interval SHOULD be at least 30 minutes and the
give-up time at least 4-5 days.  We retry sooner at first (5, 10, 20, 40
minutes, then hourly) because most 4xx answers are greylisting, which lifts
after a few minutes.
"""

from __future__ import annotations

from dataclasses import dataclass

MINUTE = 60.0
HOUR = 3600.0
DAY = 86400.0


@dataclass(frozen=True)
class RetrySchedule:
    """Delays between attempts; injectable so tests can use tiny ones."""

    # Delay after the 1st, 2nd, ... temporary failure; the last one repeats.
    delays: tuple[float, ...] = (5 * MINUTE, 10 * MINUTE, 20 * MINUTE, 40 * MINUTE, HOUR)
    # After this long in the queue a temporary failure becomes permanent.
    give_up_after: float = 5 * DAY
    # RFC 3461 "delayed" DSN once a recipient has waited this long.
    delay_warning_after: float = 4 * HOUR

    def delay(self, failures: int) -> float:
        """Seconds to wait after the `failures`-th temporary failure (1-based)."""
        if failures < 1:
            return 0.0
        return self.delays[min(failures, len(self.delays)) - 1]

    def next_attempt(self, failures: int, now: float, queued_at: float) -> float | None:
        """When to try next after a failure at `now`, or None to give up.

        The last retry is never scheduled past the give-up time: a message
        gets one final attempt at (about) its deadline rather than none.
        """
        deadline = queued_at + self.give_up_after
        if now >= deadline:
            return None
        return min(now + self.delay(failures), deadline)

    def should_warn(self, now: float, queued_at: float) -> bool:
        return now - queued_at >= self.delay_warning_after
