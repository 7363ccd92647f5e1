# -*- test-case-name: tests.queue.test_schedule -*-
from __future__ import annotations

from xmail.queue.schedule import DAY, HOUR, MINUTE, RetrySchedule


def test_default_backoff_5_10_20_40_then_hourly():
    s = RetrySchedule()
    assert [s.delay(n) for n in range(1, 9)] == [
        5 * MINUTE, 10 * MINUTE, 20 * MINUTE, 40 * MINUTE, HOUR, HOUR, HOUR, HOUR,
    ]
    assert s.delay(0) == 0


def test_attempt_times_from_arrival_until_give_up():
    s = RetrySchedule()
    t0 = 1_000_000.0
    now, failures, times = t0, 0, []
    while True:
        failures += 1
        nxt = s.next_attempt(failures, now, t0)
        if nxt is None:
            break
        times.append(nxt - t0)
        now = nxt
    assert times[:5] == [300, 900, 2100, 4500, 8100]
    # hourly afterwards, the last attempt exactly at the 5-day deadline
    assert times[5] - times[4] == HOUR
    assert times[-1] == 5 * DAY
    assert all(b - a <= HOUR for a, b in zip(times, times[1:], strict=False))


def test_give_up_and_warning():
    s = RetrySchedule()
    assert s.next_attempt(3, 5 * DAY, 0.0) is None
    assert s.next_attempt(3, 5 * DAY - 10, 0.0) == 5 * DAY
    assert not s.should_warn(4 * HOUR - 1, 0.0)
    assert s.should_warn(4 * HOUR, 0.0)


def test_injectable_tiny_schedule():
    s = RetrySchedule(delays=(0.1, 0.2), give_up_after=1.0, delay_warning_after=0.5)
    assert [s.delay(n) for n in (1, 2, 3)] == [0.1, 0.2, 0.2]
    assert s.next_attempt(1, 0.95, 0.0) == 1.0
