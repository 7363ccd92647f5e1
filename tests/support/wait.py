"""The one polling helper of the suite."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition",
               interval: float = 0.02) -> Any:
    """Poll predicate until it returns something true and return that value;
    AssertionError naming `what` on timeout.  Only for waiting *for*
    something to happen: that something did NOT happen is proved with an
    injected clock or an explicit "finished" signal, never by waiting."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)
